"""Call recordings: per call, one stereo audio file (user left, agent right, on one timeline) and a
JSON of what happened (transcripts, tool calls, turn metrics). Opt-in; nothing is written when off.

Timeline. The call's time is the user's input stream: position 0 is its first sample, the user's
audio sits at its stream position. The agent's audio sits where the client heard it: the wall time
(time.monotonic()) a frame left for the client, mapped onto the input stream through the arrival
times of the input chunks (`StreamClock`). Consecutive agent frames play back to back on the client,
so they are laid end to end; a new reply (a gap longer than CONTIGUOUS_MS) starts at its own time.

Memory is bounded: each track keeps at most FLUSH_S of int16 samples, then a writer thread appends
them to a raw temp file; a call longer than `max_call_minutes` is cut there (and says so).

Files. Names are `call-<UTC start>-<session id>.{ogg|wav,json}`: the session id is the server's
own, checked to be plain, nothing the client sent goes into a name. Both files are written to a
temp name and renamed, so a reader never sees half a file. A retention sweep deletes recordings
older than `retention_days` (at server start, then daily, in a thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from voice.codecs.resample import StreamResampler

log = logging.getLogger(__name__)

RATE_HZ = 16000            # both channels: the user's input rate; agent audio is resampled to it
FLUSH_S = 10.0             # a track hands its buffered samples to the writer thread this often
ALIGN_WINDOW_S = 2.0       # input chunks whose arrival times place the agent's audio (least delayed wins)
CONTIGUOUS_MS = 40.0       # agent audio due within this of where the last frame ended continues it
MAX_EVENTS = 10_000        # events kept per call; more are counted, not stored
SWEEP_INTERVAL_S = 86400.0
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
RECORDING_NAME = re.compile(r"\.?call-\d{8}T\d{6}Z-[A-Za-z0-9_-]{1,64}"
                            r"(\.(ogg|wav|json)|\.(ogg|wav|json)\.tmp|\.(user|agent)\.raw)")
FORMATS = {"ogg": ("OGG", "OPUS"), "wav": ("WAV", "PCM_16")}  # soundfile format, subtype

#: One thread appends every call's audio blocks in order; a call's files are finished elsewhere.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording")


class RecordingSettings(BaseModel):
    """Call recording (off by default). Per agent or per session: the session gives its own copy."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    folder: Path | None = None                    # where recordings go; required when enabled
    retention_days: float = Field(30.0, gt=0)     # older recordings are deleted (daily sweep)
    format: Literal["wav", "ogg"] = "ogg"         # ogg = Opus in Ogg, ~10x smaller than 16-bit WAV
    consent_line: str | None = None               # spoken at the start of a recorded call, if set
    max_call_minutes: float = Field(120.0, gt=0)  # audio beyond this is not recorded (disk, memory)

    @model_validator(mode="after")
    def _folder_when_enabled(self) -> RecordingSettings:
        if self.enabled and self.folder is None:
            raise ValueError("enabled = true needs a folder")
        return self


class StreamClock:
    """Wall time (time.monotonic() s) -> input stream position (ms). Each input chunk that arrives
    says where stream time stood then; network delay only makes chunks late, so the least delayed
    chunk of the last ALIGN_WINDOW_S is the best estimate (and a moving window follows clock drift)."""

    def __init__(self, origin: float):
        self._origin = origin  # stream 0 ms in wall time until the first chunk says otherwise
        self._marks: deque[tuple[float, float]] = deque()  # (arrival, arrival - stream end in s)

    def arrived(self, stream_end_ms: float, at: float) -> None:
        self._marks.append((at, at - stream_end_ms / 1000))
        while self._marks[0][0] < at - ALIGN_WINDOW_S:
            self._marks.popleft()

    def stream_ms(self, at: float) -> float:
        origin = min(offset for _, offset in self._marks) if self._marks else self._origin
        return (at - origin) * 1000


class Track:
    """One mono int16 channel at RATE_HZ, written in order to a raw temp file by the writer thread.
    `position` counts the samples placed so far (buffered or written)."""

    def __init__(self, path: Path, max_samples: int):
        self.path, self.max_samples = path, max_samples
        self.position = 0
        self.truncated = False
        self.jobs: list[Future] = []
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0

    def place(self, position: int, samples: np.ndarray) -> None:
        """Samples that start at `position`: silence fills a gap, an overlap drops the older part."""
        if position < self.position:
            samples = samples[self.position - position:]
        self.pad_to(position)
        self.append(samples)

    def pad_to(self, position: int) -> None:
        gap = min(position, self.max_samples) - self.position
        if gap <= 0:
            return
        if gap <= FLUSH_S * RATE_HZ:
            self.append(np.zeros(gap, np.int16))
            return
        self.flush()
        self.jobs.append(_WRITER.submit(_append_silence, self.path, gap))
        self.position += gap

    def append(self, samples: np.ndarray) -> None:
        room = self.max_samples - self.position
        if len(samples) > room:
            samples, self.truncated = samples[:room], True
        if not len(samples):
            return
        self._pending.append(samples)
        self.position += len(samples)
        self._pending_samples += len(samples)
        if self._pending_samples >= FLUSH_S * RATE_HZ:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            block = np.concatenate(self._pending)
            self._pending, self._pending_samples = [], 0
            self.jobs.append(_WRITER.submit(_append_samples, self.path, block))


def _append_samples(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(samples.astype("<i2").tobytes())


def _append_silence(path: Path, samples: int) -> None:
    block = int(FLUSH_S * RATE_HZ)
    while samples > 0:
        _append_samples(path, np.zeros(min(block, samples), np.int16))
        samples -= block


def as_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def as_float32(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768
    return samples.astype(np.float32, copy=False)


class CallRecorder:
    """Records one call. Created by `open()` per session (None when recording is off); fed on the
    event loop (cheap: buffering only), finished by `close()`, which writes the files off the loop."""

    def __init__(self, settings: RecordingSettings, session_id: str, *, now: float | None = None):
        if not SAFE_ID.fullmatch(session_id):
            raise ValueError("session id must be 1-64 letters, digits, '-' or '_' (server-generated)")
        if settings.folder is None:
            raise ValueError("recording needs a folder")
        self.settings, self.session_id = settings, session_id
        self.folder = settings.folder
        self.started_utc = datetime.now(UTC)
        self.name = f"call-{self.started_utc:%Y%m%dT%H%M%SZ}-{session_id}"
        max_samples = int(settings.max_call_minutes * 60 * RATE_HZ)
        self._user = Track(self.folder / f".{self.name}.user.raw", max_samples)
        self._agent = Track(self.folder / f".{self.name}.agent.raw", max_samples)
        self._clock = StreamClock(time.monotonic() if now is None else now)
        self._resampler: StreamResampler | None = None
        self._agent_due = 0.0  # track position (samples) where the current agent segment's next input lands
        self._events: list[dict] = []
        self._dropped_events = 0
        self._closed: asyncio.Future | None = None

    @classmethod
    def open(cls, settings: RecordingSettings, session_id: str) -> CallRecorder | None:
        return cls(settings, session_id) if settings.enabled else None

    def user_audio(self, samples_16k: np.ndarray, at_stream_ms: float, arrived_at: float | None = None) -> None:
        """Input audio at 16 kHz starting at `at_stream_ms` of the input stream; `arrived_at` is the
        time.monotonic() it reached the server (default: now)."""
        arrived_at = time.monotonic() if arrived_at is None else arrived_at
        self._clock.arrived(at_stream_ms + 1000 * len(samples_16k) / RATE_HZ, arrived_at)
        self._user.place(round(at_stream_ms * RATE_HZ / 1000), as_int16(samples_16k))

    def agent_audio(self, samples: np.ndarray, rate_hz: int, at: float | None = None) -> None:
        """Agent audio (float32 or int16 at `rate_hz`) that left for the client at time.monotonic() `at`."""
        due = self._clock.stream_ms(time.monotonic() if at is None else at) * RATE_HZ / 1000
        new_reply = due - self._agent_due > CONTIGUOUS_MS * RATE_HZ / 1000
        if self._resampler is None or self._resampler.in_hz != rate_hz or new_reply:
            self._end_agent_segment()
            self._resampler = StreamResampler(rate_hz, RATE_HZ)
            self._agent_due = max(due, self._agent.position)
            self._agent.pad_to(round(self._agent_due))
        self._agent.append(as_int16(self._resampler.process(as_float32(samples))))
        self._agent_due += len(samples) * RATE_HZ / rate_hz

    def _end_agent_segment(self) -> None:
        if self._resampler is not None:
            self._agent.append(as_int16(self._resampler.flush()))
            self._resampler = None

    def event(self, kind: str, data: dict, at: float | None = None) -> None:
        """Something that happened (a transcript, a tool call, turn metrics), stamped on the call's timeline."""
        if len(self._events) >= MAX_EVENTS:
            self._dropped_events += 1
            return
        t_ms = self._clock.stream_ms(time.monotonic() if at is None else at)
        self._events.append({"t_ms": round(t_ms, 1), "kind": kind, "data": dict(data)})

    async def close(self) -> Path | None:
        """Write the audio file and the JSON; returns the audio file (None if the call had no audio
        or writing failed, which is logged). Safe to call more than once."""
        if self._closed is None:
            self._closed = asyncio.ensure_future(self._finish())
        return await asyncio.shield(self._closed)

    async def _finish(self) -> Path | None:
        self._end_agent_segment()
        self._user.flush()
        self._agent.flush()
        jobs = self._user.jobs + self._agent.jobs
        await asyncio.gather(*(asyncio.wrap_future(job) for job in jobs), return_exceptions=True)
        try:
            for job in jobs:
                job.result()
            return await asyncio.to_thread(self._write_files)
        except (OSError, RuntimeError, ValueError) as e:  # disk full, folder gone, libsndfile refusing
            log.error("call recording failed", extra={"session": self.session_id, "error": str(e)})
            return None
        finally:
            await asyncio.to_thread(_remove, self._user.path, self._agent.path)

    def _write_files(self) -> Path | None:
        """Interleave the two raw tracks into the stereo file block by block, then the JSON."""
        frames = max(self._user.position, self._agent.position)
        audio = self.folder / f"{self.name}.{self.settings.format}" if frames else None
        if audio is not None:
            _atomic(audio, lambda tmp: self._write_stereo(tmp, frames))
        meta = {"session_id": self.session_id, "started_utc": self.started_utc.isoformat(),
                "audio": audio.name if audio else None, "format": self.settings.format, "rate_hz": RATE_HZ,
                "channels": ["user", "agent"], "duration_s": frames / RATE_HZ,
                "truncated": self._user.truncated or self._agent.truncated, "events": self._events,
                "events_dropped": self._dropped_events}
        text = json.dumps(meta, ensure_ascii=False, indent=1, default=str)
        _atomic(self.folder / f"{self.name}.json", lambda tmp: tmp.write_text(text + "\n"))
        log.info("call recorded", extra={"session": self.session_id, "file": str(audio), "seconds": frames / RATE_HZ})
        return audio

    def _write_stereo(self, path: Path, frames: int) -> None:
        import soundfile as sf

        container, subtype = FORMATS[self.settings.format]
        block = int(FLUSH_S * RATE_HZ)
        with sf.SoundFile(str(path), "w", RATE_HZ, 2, subtype, format=container) as out, \
                _open_or_empty(self._user.path) as user, _open_or_empty(self._agent.path) as agent:
            for start in range(0, frames, block):
                n = min(block, frames - start)
                out.write(np.stack([_read_samples(user, n), _read_samples(agent, n)], axis=1))


def _atomic(path: Path, write: Any) -> None:
    """`write(tmp)` then rename over `path`: readers see the whole file or none; no temp left behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _open_or_empty(path: Path) -> Any:
    return open(path, "rb") if path.exists() else open(os.devnull, "rb")


def _read_samples(f: Any, n: int) -> np.ndarray:
    """n int16 samples from a raw track, zero-filled past its end (the other track may be longer)."""
    data = np.frombuffer(f.read(2 * n), "<i2")
    return np.concatenate([data, np.zeros(n - len(data), np.int16)]) if len(data) < n else data


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def sweep_old_recordings(folder: Path, retention_days: float, now: float | None = None) -> int:
    """Delete the recordings (and temp files left by a crash) in `folder` last modified more than
    `retention_days` ago; only names this module writes are touched. Returns how many were deleted."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    deleted = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if RECORDING_NAME.fullmatch(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:  # deleted meanwhile (another process's sweep)
            continue
    return deleted


async def retention_sweeps(settings: RecordingSettings) -> None:
    """Sweep at start, then every SWEEP_INTERVAL_S, in a thread; run as a task for the server's life."""
    if not settings.enabled or settings.folder is None:
        return
    while True:
        try:
            deleted = await asyncio.to_thread(sweep_old_recordings, settings.folder, settings.retention_days)
            if deleted:
                log.info("old call recordings deleted", extra={"count": deleted, "folder": str(settings.folder)})
        except OSError as e:
            log.warning("recording retention sweep failed", extra={"error": str(e)})
        await asyncio.sleep(SWEEP_INTERVAL_S)
