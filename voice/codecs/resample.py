"""Sample-rate conversion with soxr (high quality, linear phase).

`StreamResampler` keeps soxr's filter state across chunks, so a stream cut into 20 ms pieces
resamples to the same signal as the whole (no clicks at chunk edges). soxr holds back a few ms of
output for its filter; `flush()` returns that tail at the end of a stream.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """Resamples one mono stream chunk by chunk. Owns its soxr state; not thread-safe.

    `in_hz`, `out_hz`: sample rates in Hz. `dtype`: np.float32 or np.int16 for input and output.
    """

    def __init__(self, in_hz: int, out_hz: int, *, dtype: type = np.float32, quality: str = "HQ") -> None:
        if in_hz <= 0 or out_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {in_hz} -> {out_hz}")
        self.in_hz = in_hz
        self.out_hz = out_hz
        self.dtype = np.dtype(dtype)
        self._stream = (
            None if in_hz == out_hz
            else soxr.ResampleStream(in_hz, out_hz, 1, dtype=self.dtype.name, quality=quality)
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk; the output may be a few samples shorter than in/out * len."""
        samples = np.ascontiguousarray(samples, dtype=self.dtype)
        if self._stream is None:
            return samples.copy()
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """End of stream: the samples soxr still holds. The resampler is spent afterwards."""
        if self._stream is None:
            return np.zeros(0, dtype=self.dtype)
        return self._stream.resample_chunk(np.zeros(0, dtype=self.dtype), last=True)


def resample(samples: np.ndarray, in_hz: int, out_hz: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample a whole mono signal at once (same dtype out as in: float32 or int16)."""
    if in_hz == out_hz:
        return np.asarray(samples).copy()
    return soxr.resample(samples, in_hz, out_hz, quality=quality)
