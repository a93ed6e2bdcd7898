"""The per-session output path: TTS audio -> session-rate frames -> paced sending.

- `AudioOut` turns float32 TTS chunks (any rate) into exact 20 ms frames at the session's rate,
  encoded as Opus or PCM16, with a short fade at both ends of every TTS piece so pieces join
  without clicks, and the protocol's SEGMENT flags and sample timestamps.
- `TextTimeline` remembers which output samples voice which text, so a barge-in can cut the
  assistant's turn to what the listener actually heard.
- `Pacer` releases frames on a real-time clock, a little ahead of playback, so the client's buffer
  stays small and a barge-in silences the agent within a frame or two.

Positions are in output samples counted from the start of the session: the protocol's AUDIO
timestamp and `playback_mark.played_samples` use the same count.

An Opus frame is encoded when its `payload` is first read (by the Pacer's send): encoding a whole
Piper sentence (~150 frames, 0.15-0.35 ms each) at once would stall the event loop for 20-90 ms,
more than the pacer's lead; frames dropped by a barge-in are never encoded at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from voice.codecs.opus import OpusEncoder
from voice.codecs.pcm import float32_to_bytes, float32_to_int16
from voice.codecs.resample import StreamResampler
from voice.protocol import Flags

log = logging.getLogger(__name__)

OutCodec = Literal["opus", "pcm16"]


class OutFrame:
    """One frame for an AUDIO message. `timestamp_samples`: stream position of its first sample;
    `samples`: its duration; `segment`: index of its reply (0 for the session's first);
    `pcm`: its float32 samples at the session rate (None when built from a payload).

    `payload` is the Opus packet or PCM16 LE bytes. A frame made by AudioOut encodes on first read,
    and encodes every earlier frame first: the Opus encoder is stateful, so order matters.
    """

    __slots__ = ("_index", "_payload", "_source", "flags", "pcm", "samples", "segment", "timestamp_samples")

    def __init__(self, payload: bytes, timestamp_samples: int, flags: Flags, segment: int, samples: int) -> None:
        self._payload: bytes | None = payload
        self.timestamp_samples = timestamp_samples
        self.flags = flags
        self.segment = segment
        self.samples = samples
        self.pcm: np.ndarray | None = None
        self._source: AudioOut | None = None
        self._index = 0

    @property
    def payload(self) -> bytes:
        if self._payload is None and self._source is not None:
            self._source._encode_through(self)
        assert self._payload is not None
        return self._payload

    def __repr__(self) -> str:
        return f"OutFrame(ts={self.timestamp_samples}, flags={self.flags!r}, segment={self.segment})"


@dataclass(frozen=True, slots=True)
class TimedText:
    """A piece of text voiced by output samples [start_samples, end_samples)."""

    text: str
    start_samples: int
    end_samples: int


class TextTimeline:
    """Which output samples voice which text, for one reply."""

    def __init__(self) -> None:
        self.pieces: list[TimedText] = []

    def add(self, text: str, start_samples: int, end_samples: int) -> None:
        if end_samples < start_samples:
            raise ValueError(f"piece ends ({end_samples}) before it starts ({start_samples})")
        self.pieces.append(TimedText(text, start_samples, end_samples))

    @property
    def text(self) -> str:
        """The whole text of the reply, as synthesized."""
        return " ".join(p.text for p in self.pieces if p.text)

    def heard_text(self, played_samples: int) -> str:
        """The text the listener heard once `played_samples` of the stream were played: whole
        pieces played to their end, plus the words of the current piece in proportion to how far
        into it playback got (by characters; only words wholly within that part)."""
        parts: list[str] = []
        for piece in self.pieces:
            if played_samples >= piece.end_samples:
                parts.append(piece.text)
                continue
            if played_samples > piece.start_samples:
                fraction = (played_samples - piece.start_samples) / (piece.end_samples - piece.start_samples)
                parts.append(_leading_words(piece.text, fraction))
            break
        return " ".join(p for p in parts if p)


def _leading_words(text: str, fraction: float) -> str:
    limit = fraction * len(text)
    end = 0
    for word in re.finditer(r"\S+", text):
        if word.end() > limit:
            break
        end = word.end()
    return text[:end]


class AudioOut:
    """TTS audio -> encoded frames for one session. Not thread-safe; use from the event loop.

    Per reply: `push` the chunks of each piece, `end_piece(text)` after each piece, `end_reply()`
    at the end; every call returns the frames it completed. One frame is held back until the
    reply ends, so that the last frame can carry SEGMENT_END (padded with silence to 20 ms).
    Costs: resampling, fades and framing ~1 ms per second of audio; Opus encoding 0.15-0.35 ms
    per 20 ms frame, paid when the payload is read.
    """

    def __init__(
        self,
        codec: OutCodec,
        sample_rate_hz: int,
        frame_ms: int = 20,
        *,
        fade_ms: float = 10.0,
        opus_bitrate_bps: int = 32000,
    ) -> None:
        if codec not in ("opus", "pcm16"):
            raise ValueError(f"codec must be 'opus' or 'pcm16', not {codec!r}")
        if (sample_rate_hz * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms at {sample_rate_hz} Hz is not a whole number of samples")
        self.codec = codec
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self._encoder = (OpusEncoder(sample_rate_hz, float(frame_ms), opus_bitrate_bps)
                         if codec == "opus" else None)
        fade_samples = max(1, round(sample_rate_hz * fade_ms / 1000))
        # Raised-cosine ramp from exactly 0 up: smoother than linear, so the fade itself is inaudible.
        self._fade_in = (np.sin(np.linspace(0.0, np.pi / 2, fade_samples, endpoint=False)) ** 2).astype(np.float32)
        self._fade_out = self._fade_in[::-1].copy()  # ends at exactly 0
        #: Text timeline of the current (or last) reply.
        self.timeline = TextTimeline()
        self._position_samples = 0  # timestamp of the next frame
        # A reply gets its segment index with its first frame, so one without audio uses none.
        self._segment = -1
        self._segment_start_samples = -1  # timestamp of that segment's first frame
        self._in_reply = False
        self._reply_frames = 0
        self._ready = np.zeros(0, np.float32)  # final samples not yet framed
        self._tail = np.zeros(0, np.float32)   # last fade of the open piece, awaiting its fade-out
        self._resampler: StreamResampler | None = None  # set while a piece is open
        self._piece_samples = 0
        self._piece_start_samples = 0
        self._unencoded: deque[OutFrame] = deque()  # Opus frames made, not yet encoded, in order
        self._frames_made = 0

    @property
    def segment(self) -> int:
        """Index of the current (or last) reply that produced audio; -1 before the first."""
        return self._segment

    def push(self, chunk: np.ndarray, chunk_rate_hz: int) -> list[OutFrame]:
        """Add float32 mono audio of the current piece (a piece opens on its first chunk)."""
        if not self._in_reply:
            self._start_reply()
        if self._resampler is None:
            self._piece_start_samples = self._stream_end()
            self._piece_samples = 0
            self._resampler = StreamResampler(chunk_rate_hz, self.sample_rate_hz)
        elif self._resampler.in_hz != chunk_rate_hz:  # the engine changed rate mid-piece
            self._add(self._resampler.flush())
            self._resampler = StreamResampler(chunk_rate_hz, self.sample_rate_hz)
        self._add(self._resampler.process(np.asarray(chunk, dtype=np.float32).reshape(-1)))
        return self._frames(final=False)

    def end_piece(self, text: str = "") -> list[OutFrame]:
        """The current piece is complete: fade out its end and record `text` for its samples."""
        if not self._in_reply:
            self._start_reply()
        if self._resampler is None:  # a piece without audio: its text is "heard" at this point
            start = self._stream_end()
        else:
            self._add(self._resampler.flush())
            self._resampler = None
            self._tail = self._tail * self._fade_out[len(self._fade_out) - len(self._tail):]
            self._ready = np.concatenate([self._ready, self._tail])
            self._tail = np.zeros(0, np.float32)
            start = self._piece_start_samples
        self.timeline.add(text, start, self._stream_end())
        return self._frames(final=False)

    def end_reply(self) -> list[OutFrame]:
        """The reply is complete: every remaining frame, the last one padded and SEGMENT_END."""
        if not self._in_reply:
            return []
        frames = self.end_piece() if self._resampler is not None else []
        frames += self._frames(final=True)
        self._in_reply = False
        return frames

    def interrupt(self, sent_samples: int) -> None:
        """Barge-in: drop all audio not yet framed. The stream goes on at `sent_samples` (what the
        Pacer actually sent), so later timestamps count only samples the client received. The
        timeline is kept for `heard_text`."""
        if self._segment >= 0 and sent_samples <= self._segment_start_samples:
            self._segment -= 1  # no frame of that reply reached the client: reuse its index
            self._segment_start_samples = -1
        self._in_reply = False
        self._resampler = None
        self._ready = np.zeros(0, np.float32)
        self._tail = np.zeros(0, np.float32)
        self._unencoded.clear()  # dropped by the pacer: never encoded
        self._position_samples = sent_samples

    def _start_reply(self) -> None:
        self._in_reply = True
        self._reply_frames = 0
        self.timeline = TextTimeline()

    def _stream_end(self) -> int:  # stream position just after the last sample added so far
        return self._position_samples + len(self._ready) + len(self._tail)

    def _add(self, samples: np.ndarray) -> None:
        """Append resampled samples of the open piece: fade in its start, hold back its tail."""
        samples = samples.astype(np.float32, copy=True)
        fade = len(self._fade_in)
        if self._piece_samples < fade and len(samples):
            n = min(fade - self._piece_samples, len(samples))
            samples[:n] *= self._fade_in[self._piece_samples:self._piece_samples + n]
        self._piece_samples += len(samples)
        joined = np.concatenate([self._tail, samples])
        split = max(len(joined) - fade, 0)
        self._ready = np.concatenate([self._ready, joined[:split]])
        self._tail = joined[split:]

    def _encode_through(self, frame: OutFrame) -> None:
        """Encode queued Opus frames in stream order up to and including `frame`."""
        assert self._encoder is not None and frame.pcm is not None
        if not self._unencoded or frame._index < self._unencoded[0]._index:
            batch = [frame]  # dropped by interrupt(), so never sent: encode it alone
        else:
            batch = []
            while not batch or batch[-1] is not frame:
                batch.append(self._unencoded.popleft())
        for queued in batch:
            assert queued.pcm is not None
            queued._payload = self._encoder.encode(float32_to_int16(queued.pcm))
            queued._source = None  # no reference cycle once encoded

    def _frames(self, *, final: bool) -> list[OutFrame]:
        n = self.frame_samples
        if final and len(self._ready) % n:
            self._ready = np.concatenate([self._ready, np.zeros(n - len(self._ready) % n, np.float32)])
        count = len(self._ready) // n if final else max(len(self._ready) - 1, 0) // n
        frames = []
        for i in range(count):
            flags = Flags.NONE
            if self._reply_frames == 0:
                flags |= Flags.SEGMENT_START
                self._segment += 1
                self._segment_start_samples = self._position_samples
            if final and i == count - 1:
                flags |= Flags.SEGMENT_END
            frames.append(self._frame(self._ready[i * n:(i + 1) * n].copy(), flags))
            self._position_samples += n
            self._reply_frames += 1
        self._ready = self._ready[count * n:]
        return frames

    def _frame(self, pcm: np.ndarray, flags: Flags) -> OutFrame:
        frame = OutFrame(b"", self._position_samples, flags, self._segment, len(pcm))
        frame.pcm = pcm
        if self._encoder is None:
            frame._payload = float32_to_bytes(pcm)  # PCM16 is cheap: no need to defer
        else:
            frame._payload, frame._source, frame._index = None, self, self._frames_made
            self._unencoded.append(frame)
        self._frames_made += 1
        return frame


class Pacer:
    """Sends frames to `send` in real time, at most `lead_ms` ahead of the client's playback.

    Frame k of a run goes out at start + (duration of frames 0..k) - lead, on the monotonic clock,
    so there is no drift; once the client has played everything sent (a gap between replies, or
    the TTS fell behind), the clock restarts instead of bursting to catch up. The pacing task
    starts on the first `enqueue`; call `aclose()` when the session ends.
    """

    def __init__(
        self,
        send: Callable[[OutFrame], Awaitable[None]],
        sample_rate_hz: int,
        *,
        lead_ms: float = 60.0,
    ) -> None:
        if lead_ms < 0:
            raise ValueError(f"lead_ms must be >= 0, got {lead_ms}")
        self._send = send
        self.sample_rate_hz = sample_rate_hz
        self.lead_ms = lead_ms
        self._queue: deque[OutFrame] = deque()
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._held = False
        #: Samples handed to `send` since the session started.
        self.sent_samples = 0
        self._run_start_s = float("-inf")  # monotonic time the current run started
        self._run_sent_samples = 0

    @property
    def queued_samples(self) -> int:
        return sum(f.samples for f in self._queue)

    def enqueue(self, frames: Iterable[OutFrame]) -> None:
        """Queue frames for sending, in order. After aclose() frames are dropped (the session is
        ending; audio still arriving from the TTS has nowhere to go)."""
        if self._closed:
            return
        self._queue.extend(frames)
        if not self._queue:
            return
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pacer")

    def stop(self) -> int:
        """Barge-in: drop every queued frame at once; return `sent_samples`. The next frame
        starts a new run (the client flushes its buffer on interrupt)."""
        self._queue.clear()
        self._run_start_s = float("-inf")
        self._wake.set()
        self._idle.set()
        return self.sent_samples

    def hold(self) -> None:
        """Queue but do not send (a reply prepared before its turn is confirmed)."""
        self._held = True

    def release(self) -> None:
        """Send what is queued, from now on in real time."""
        self._held = False
        self._wake.set()

    async def wait_idle(self) -> None:
        """Until every queued frame has been sent (or dropped by stop)."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop sending for good: drop the queue and end the pacing task."""
        self._closed = True
        self.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        lead_s = self.lead_ms / 1000.0
        while not self._closed:
            if not self._queue or self._held:
                if not self._queue:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = self._queue[0]
            now = time.monotonic()
            if now >= self._run_start_s + self._run_sent_samples / self.sample_rate_hz:
                self._run_start_s, self._run_sent_samples = now, 0  # client ran dry: restart
            due_s = self._run_start_s + (self._run_sent_samples + frame.samples) / self.sample_rate_hz - lead_s
            if due_s > now:
                self._wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # arrives together with the wake-up, and aclose() would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due_s - now):
                        await self._wake.wait()
                continue  # look again: stop() may have dropped this frame meanwhile
            self._queue.popleft()
            self._run_sent_samples += frame.samples
            self.sent_samples += frame.samples
            try:
                await self._send(frame)
            except Exception:  # the connection is gone: nothing more can be sent
                log.warning("pacer: send failed; dropping %d queued frames", len(self._queue), exc_info=True)
                self.stop()
                return
