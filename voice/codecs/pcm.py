"""PCM16 <-> float32 conversion.

float32 samples are in [-1.0, 1.0); int16 full scale is 32768. Conversion to int16 clips, so an
overdriven float signal saturates instead of wrapping around (which would be a loud click).
"""

from __future__ import annotations

import numpy as np

from voice.codecs import BadAudio

INT16_SCALE = 32768.0


def int16_to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1)."""
    return samples.astype(np.float32) / INT16_SCALE


def float32_to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 samples -> int16, rounded and clipped to [-32768, 32767]."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def bytes_to_float32(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes -> float32 samples. Raises BadAudio on an odd byte count."""
    if len(data) % 2:
        raise BadAudio(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return int16_to_float32(np.frombuffer(data, dtype="<i2"))


def float32_to_bytes(samples: np.ndarray) -> bytes:
    """float32 samples -> little-endian PCM16 bytes (clipped)."""
    return float32_to_int16(samples).astype("<i2").tobytes()
