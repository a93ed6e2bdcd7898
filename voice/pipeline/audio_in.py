"""Client audio in: AUDIO payloads (Opus packets or PCM16) -> float32 mono at 16 kHz for the ears.

Decoding one 20 ms Opus packet and resampling it cost tens of microseconds, so this runs inline
on the event loop; model inference (VAD, Whisper) is what goes to worker threads.
"""

from __future__ import annotations

import numpy as np

from voice.codecs.opus import OpusDecoder
from voice.codecs.pcm import bytes_to_float32, int16_to_float32
from voice.codecs.resample import StreamResampler

EARS_RATE_HZ = 16000


class AudioInput:
    """Per-session decoder + resampler; owns its codec state. Formats are validated by the HELLO parser."""

    def __init__(self, codec: str, sample_rate_hz: int):
        self.codec = codec
        self.sample_rate_hz = sample_rate_hz
        self._opus = OpusDecoder(sample_rate_hz) if codec == "opus" else None
        self._resampler = StreamResampler(sample_rate_hz, EARS_RATE_HZ) if sample_rate_hz != EARS_RATE_HZ else None
        self.samples_in = 0  # at the client's rate

    def decode(self, payload: bytes) -> np.ndarray:
        """One AUDIO payload -> float32 16 kHz samples (may be empty while the resampler fills)."""
        # both raise BadAudio: a malformed Opus packet, an odd PCM16 byte count
        pcm = int16_to_float32(self._opus.decode(payload)) if self._opus else bytes_to_float32(payload)
        self.samples_in += len(pcm)
        return self._resampler.process(pcm) if self._resampler else pcm

    def flush(self) -> np.ndarray:
        """The resampler's tail at end of input (end_of_input). A soxr stream is spent after its
        last chunk, so a fresh one takes over: audio or another end_of_input may still follow."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.flush()
        self._resampler = StreamResampler(self.sample_rate_hz, EARS_RATE_HZ)
        return tail

