"""Audio codecs and sample formats: PCM16 conversion, resampling (soxr), Opus (libopus).

Every codec raises `BadAudio` for input it cannot decode, so callers handle one error type
whatever the library underneath.
"""


class BadAudio(ValueError):
    """Audio data that cannot be decoded: malformed packet, odd byte count, wrong frame length."""


__all__ = ["BadAudio"]
