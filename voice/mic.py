"""`voice mic`: stream a microphone, a WAV file or raw PCM on stdin to a server and show what it hears.

Sources yield int16 chunks at the session's input rate; file and stdin sources are paced in real
time (20 ms per frame) unless --fast. Exit codes say what went wrong, for scripts:
0 ok, 1 unexpected, 2 usage, 3 cannot connect, 4 auth refused, 5 protocol/session error,
6 audio device or file error, 7 timed out waiting for results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from websockets.exceptions import ConnectionClosed

from voice.client import ClientError, ClientOptions, ReceivedAudio, ServerError, VoiceClient
from voice.codecs.resample import resample
from voice.protocol import ErrorCode
from voice.protocol import messages as msg

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_CONNECT, EXIT_AUTH, EXIT_SESSION, EXIT_AUDIO, EXIT_TIMEOUT = range(8)
CHUNK_MS = 20
MARK_INTERVAL_S = 0.1
MIC_STALL_S = 5.0  # a live device silent this long is broken (not quiet: silence still flows)


class AudioSourceError(Exception):
    """No usable input: missing file, unreadable WAV, no sound device."""


@dataclass
class MicArgs:
    url: str
    token: str | None
    input: str | None          # None: live microphone; "-": raw s16le on stdin; else a WAV path
    stdin_rate_hz: int
    rate_hz: int
    codec: str
    fast: bool
    record: Path | None
    json_out: bool
    seconds: float | None
    device: str | None
    result_timeout_s: float
    options: dict[str, Any]
    playback: bool = True


# ---------------------------------------------------------------------- sources


def load_wav(path: Path, rate_hz: int) -> np.ndarray:
    """A WAV (any rate, mono or first channel) as int16 at rate_hz."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise AudioSourceError(f"cannot read {path}: {e}") from None
    mono = data[:, 0]
    if file_rate != rate_hz:
        mono = resample(mono, file_rate, rate_hz)
    return (np.clip(mono, -1, 1) * 32767).astype(np.int16)


async def paced(samples: np.ndarray, rate_hz: int, fast: bool) -> AsyncIterator[np.ndarray]:
    """20 ms chunks, released on a real-time clock (no drift) unless fast."""
    step = rate_hz * CHUNK_MS // 1000
    start = time.monotonic()
    for i, pos in enumerate(range(0, len(samples), step)):
        if not fast:
            delay = start + i * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield samples[pos:pos + step]


async def stdin_chunks(in_rate_hz: int, rate_hz: int, fast: bool) -> AsyncIterator[np.ndarray]:
    """Raw s16le mono on stdin, read off the loop in 20 ms blocks, paced like a file."""
    step_bytes = in_rate_hz * CHUNK_MS // 1000 * 2
    start = time.monotonic()
    n = 0
    while True:
        block = await asyncio.to_thread(sys.stdin.buffer.read, step_bytes)
        if not block:
            return
        pcm = np.frombuffer(block[: len(block) // 2 * 2], "<i2")
        if in_rate_hz != rate_hz:
            pcm = (resample(pcm.astype(np.float32) / 32768, in_rate_hz, rate_hz) * 32767).astype(np.int16)
        if not fast:
            delay = start + n * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        n += 1
        yield pcm


async def microphone(rate_hz: int, device: str | None, seconds: float | None) -> AsyncIterator[np.ndarray]:
    """Live capture through sounddevice; the PortAudio callback thread hands blocks to the loop."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio library missing
        raise AudioSourceError(f"no audio system: {e}") from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue()

    def callback(indata, frames, t, status):  # runs on PortAudio's thread
        loop.call_soon_threadsafe(queue.put_nowait, indata[:, 0].copy())

    try:
        stream = sd.InputStream(samplerate=rate_hz, channels=1, dtype="int16", device=device,
                                blocksize=rate_hz * CHUNK_MS // 1000, callback=callback)
    except (sd.PortAudioError, ValueError) as e:
        raise AudioSourceError(f"no usable microphone ({e}); use --input FILE.wav or --input -") from None
    deadline = time.monotonic() + seconds if seconds else None
    with stream:
        while deadline is None or time.monotonic() < deadline:
            try:
                yield await asyncio.wait_for(queue.get(), MIC_STALL_S)
            except TimeoutError:
                raise AudioSourceError(f"the microphone delivered no audio for {MIC_STALL_S:g} s") from None


def open_source(args: MicArgs) -> AsyncIterator[np.ndarray]:
    if args.input is None:
        return microphone(args.rate_hz, args.device, args.seconds)
    if args.input == "-":
        return stdin_chunks(args.stdin_rate_hz, args.rate_hz, args.fast)
    path = Path(args.input)
    if not path.is_file():
        raise AudioSourceError(f"no such file: {path}")
    return paced(load_wav(path, args.rate_hz), args.rate_hz, args.fast)


# ---------------------------------------------------------------------- output


class Printer:
    """Human lines (partials rewritten in place on a terminal) or one JSON object per line."""

    def __init__(self, json_out: bool):
        self.json_out = json_out
        self.tty = sys.stdout.isatty()

    def event(self, event: Any) -> None:
        data = event.model_dump(exclude_none=True)
        if self.json_out:
            print(json.dumps(data, ensure_ascii=False), flush=True)
            return
        kind = data.get("type")
        if kind == "transcript_partial":
            line = f"… {data['text']}"
            print(f"\r\033[K{line}" if self.tty else line, end="" if self.tty else "\n", flush=True)
        elif kind == "transcript_final":
            prefix = "\r\033[K" if self.tty else ""
            again = " (you went on: one turn)" if data.get("continues") is not None else ""
            print(f"{prefix}> {data['text']}{again}" if data["text"] else f"{prefix}(no words)", flush=True)
        elif kind in ("speech_started", "speech_stopped", "input_ended"):
            print(f"[{kind.replace('_', ' ')}]", file=sys.stderr, flush=True)
        elif kind == "agent_text" and data.get("final"):
            print(f"agent: {data['text']}", flush=True)
        elif kind == "interrupted":
            print(f"[agent interrupted after {data['played_ms'] / 1000:.1f} s: {data.get('reason', 'barge_in')}]",
                  file=sys.stderr, flush=True)
        elif kind == "call_ending":
            print(f"[the agent ended the call: {data['reason']}]", file=sys.stderr, flush=True)
        elif kind == "turn_metrics":
            stages = ", ".join(f"{k} {v:.0f} ms" for k, v in data["stages_ms"].items())
            print(f"[turn {data['turn']}: {stages}]", file=sys.stderr, flush=True)

    def error(self, code: int, message: str) -> None:
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        if self.json_out:
            print(json.dumps({"type": "error", "code": code, "name": name, "message": message}), flush=True)
        else:
            print(f"error {name}: {message}", file=sys.stderr, flush=True)


class Recorder:
    """Keeps what the server sends back; written as a WAV at the output rate on close."""

    def __init__(self, path: Path | None, rate_hz: int):
        self.path, self.rate_hz = path, rate_hz
        self.chunks: list[np.ndarray] = []

    def add(self, audio: ReceivedAudio) -> None:
        if self.path:
            self.chunks.append(audio.samples)

    def close(self) -> None:
        if self.path:
            data = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
            sf.write(str(self.path), data, self.rate_hz, subtype="PCM_16")


class PlaybackClock:
    """What the client has played, for playback marks, when nothing is played aloud (--no-playback):
    a frame counts as played `jitter_ms` after it arrived (the server paces audio in real time)."""

    def __init__(self, rate_hz: int, jitter_ms: float = 40.0):
        self.rate_hz, self.jitter_s = rate_hz, jitter_ms / 1000
        self._arrivals: list[tuple[float, int]] = []  # (arrival time, stream end position)
        self.played_samples = 0

    def add(self, audio: ReceivedAudio) -> None:
        self._arrivals.append((time.monotonic(), audio.timestamp + len(audio.samples)))

    def flush(self) -> None:
        """Interrupted: what was not played yet never will be."""
        self.update()
        self._arrivals.clear()

    def update(self) -> int:
        now = time.monotonic()
        while self._arrivals and self._arrivals[0][0] + self.jitter_s <= now:
            self.played_samples = max(self.played_samples, self._arrivals.pop(0)[1])
        return self.played_samples

    async def drain(self) -> None:
        while self._arrivals:
            await asyncio.sleep(0.02)
            self.update()


class SpeakerPlayer(PlaybackClock):
    """Plays the reply through sounddevice; the PortAudio callback counts what really played."""

    def __init__(self, rate_hz: int, device: str | None):
        super().__init__(rate_hz)
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio library missing
            raise AudioSourceError(f"no audio system: {e}") from None

        self._buffer = np.zeros(0, np.int16)
        self._position = 0  # stream position of _buffer[0]
        self._lock = threading.Lock()
        try:
            self._stream = sd.OutputStream(samplerate=rate_hz, channels=1, dtype="int16", device=device,
                                           callback=self._callback, blocksize=rate_hz // 50)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise AudioSourceError(f"no usable speaker: {e}") from None

    def _callback(self, outdata, frames, t, status) -> None:  # PortAudio's thread
        with self._lock:
            n = min(frames, len(self._buffer))
            outdata[:n, 0] = self._buffer[:n]
            outdata[n:, 0] = 0
            self._buffer = self._buffer[n:]
            self._position += n
            if n:
                self.played_samples = self._position

    def add(self, audio: ReceivedAudio) -> None:
        with self._lock:
            if not len(self._buffer):
                self._position = audio.timestamp
            self._buffer = np.concatenate([self._buffer, audio.samples])

    def flush(self) -> None:
        with self._lock:
            self._buffer = np.zeros(0, np.int16)

    def update(self) -> int:
        return self.played_samples

    async def drain(self) -> None:
        while len(self._buffer):
            await asyncio.sleep(0.02)
        self._stream.stop()
        self._stream.close()


def open_player(args: MicArgs) -> PlaybackClock:
    """The speaker when the reply is to be heard, else a clock that counts it as played. Never
    refuses: with --json (a script reads stdout) or without a usable speaker the reply is saved
    (--record) or skipped, and one line on stderr says which."""
    if not args.playback:
        return PlaybackClock(args.rate_hz)
    kept = f"saved to {args.record}" if args.record else "not kept (--record FILE keeps it)"
    if args.json_out:
        print(f"reply audio not played (--json); {kept}", file=sys.stderr, flush=True)
        return PlaybackClock(args.rate_hz)
    try:
        return SpeakerPlayer(args.rate_hz, None)
    except AudioSourceError as e:
        print(f"reply audio not played ({e}); {kept}", file=sys.stderr, flush=True)
        return PlaybackClock(args.rate_hz)


# ---------------------------------------------------------------------- main flow


async def run_mic(args: MicArgs) -> int:
    printer = Printer(args.json_out)
    try:
        source = open_source(args)
    except AudioSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_AUDIO
    client = VoiceClient(args.url, ClientOptions(
        input_codec=args.codec, input_rate_hz=args.rate_hz, output_codec=args.codec,
        output_rate_hz=args.rate_hz, options=args.options, token=args.token))
    try:
        await client.connect()
    except ClientError as e:
        printer.error(e.code, e.message)
        return EXIT_AUTH if e.code in (ErrorCode.AUTH_FAILED, 401, 403) else EXIT_SESSION
    except (OSError, TimeoutError) as e:
        print(f"error: cannot connect to {args.url}: {e}", file=sys.stderr)
        return EXIT_CONNECT
    recorder = Recorder(args.record, args.rate_hz)
    try:
        return await _stream(client, source, args, printer, recorder)
    except AudioSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_AUDIO
    except ClientError as e:
        printer.error(e.code, e.message)
        return EXIT_SESSION
    finally:
        recorder.close()
        await client.close()


async def _stream(client: VoiceClient, source: AsyncIterator[np.ndarray], args: MicArgs,
                  printer: Printer, recorder: Recorder) -> int:
    failed: list[int] = []
    player = open_player(args)

    async def receive() -> None:
        async for item in client.messages():
            if isinstance(item, ReceivedAudio):
                recorder.add(item)
                player.add(item)
            elif isinstance(item, ServerError):
                printer.error(item.code, item.message)
                failed.append(item.code)
            else:
                printer.event(item)
                kind = getattr(item, "type", None)
                if kind == "interrupted":
                    player.flush()
                elif kind == "input_ended":
                    await player.drain()
                    return

    async def report_playback() -> None:
        """Playback marks let the server cut an interrupted reply to what was heard."""
        last = -1
        while True:
            await asyncio.sleep(MARK_INTERVAL_S)
            played = player.update()
            if played != last:
                try:
                    await client.send_control(msg.PlaybackMark(played_samples=played))
                except ConnectionClosed:
                    return  # the session is over
                last = played

    receiver = asyncio.create_task(receive())
    marks = asyncio.create_task(report_playback())
    try:
        async for chunk in source:
            if receiver.done():
                break
            try:
                await client.send_audio(chunk)
            except ConnectionClosed:
                break  # the server ended the session (the agent hung up): the receiver says how
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    if not receiver.done():
        with contextlib.suppress(ConnectionClosed):
            await client.end_input()
    try:
        await asyncio.wait_for(asyncio.shield(receiver), args.result_timeout_s)
    except TimeoutError:
        receiver.cancel()
        print("error: timed out waiting for the results of the input", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        marks.cancel()
    receiver.result()  # re-raises ClientError from the receiver
    return EXIT_SESSION if failed else EXIT_OK
