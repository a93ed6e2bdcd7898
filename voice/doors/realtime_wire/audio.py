"""Audio in the Realtime formats <-> int16 samples: 16-bit little-endian PCM at 24 kHz, G.711
μ-law / A-law at 8 kHz (voice/codecs/g711.py). Resampling to and from the pipeline's rates is the
door's business (voice/codecs/resample.py)."""

from __future__ import annotations

import numpy as np

from voice.codecs import BadAudio
from voice.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voice.doors.realtime_wire.base import RealtimeWireError
from voice.doors.realtime_wire.session import AudioFormat, PcmaFormat, PcmFormat, PcmuFormat

PCM_RATE_HZ = 24000
G711_RATE_HZ = 8000


def rate_hz(fmt: AudioFormat) -> int:
    """Sample rate of a format, Hz."""
    return PCM_RATE_HZ if isinstance(fmt, PcmFormat) else G711_RATE_HZ


def bytes_per_sample(fmt: AudioFormat) -> int:
    return 2 if isinstance(fmt, PcmFormat) else 1


def duration_ms(n_bytes: int, fmt: AudioFormat) -> float:
    """How long `n_bytes` of audio in `fmt` play, ms."""
    return n_bytes / bytes_per_sample(fmt) / rate_hz(fmt) * 1000


def decode_audio(data: bytes, fmt: AudioFormat, event_id: str | None = None) -> np.ndarray:
    """Wire bytes -> int16 samples at `rate_hz(fmt)` (a new array). PCM of odd length (half a
    sample) raises RealtimeWireError("invalid_value"), naming the client's `event_id`."""
    if isinstance(fmt, PcmuFormat):
        return ulaw_decode(data)
    if isinstance(fmt, PcmaFormat):
        return alaw_decode(data)
    if len(data) % 2:
        raise RealtimeWireError("invalid_value", f"Invalid 'audio': audio/pcm is 16-bit, {len(data)} bytes "
                                "is not a whole number of samples.", event_id, "audio")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def encode_audio(pcm: np.ndarray, fmt: AudioFormat) -> bytes:
    """int16 samples at `rate_hz(fmt)` -> wire bytes."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise BadAudio(f"Realtime audio is encoded from int16 samples, got {pcm.dtype}")
    if isinstance(fmt, PcmuFormat):
        return ulaw_encode(pcm)
    if isinstance(fmt, PcmaFormat):
        return alaw_encode(pcm)
    return pcm.astype("<i2", copy=False).tobytes()
