"""G.711 μ-law and A-law (ITU-T G.711) in numpy, replacing the stdlib `audioop` (gone in 3.13).

Both laws compress a 16-bit linear sample to one byte: a sign bit, a 3-bit segment (exponent) and
a 4-bit step inside the segment. Encoding goes through a 65,536-entry table built once from the
reference algorithm (the same one as ITU-T G.191's g711.c and audioop), so encoding a 20 ms frame
is one fancy-indexing operation; decoding is a 256-entry table. Linear samples are int16 at 8 kHz;
the codec itself has no notion of rate.
"""

from __future__ import annotations

import numpy as np

from voice.codecs import BadAudio

_ULAW_BIAS = 0x84   # added to the magnitude so the segment is the position of its top bit
_ULAW_CLIP = 8159   # largest 14-bit magnitude that still fits segment 7 after the bias
# Upper bound of each segment (ITU-T G.191 g711.c seg_uend / seg_aend).
_ULAW_SEG_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)

#: Byte an idle (silent) channel carries; what a receiver hears as silence.
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _ulaw_encode_reference(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32) >> 2  # μ-law works on 14-bit samples
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_ENDS, x, side="left")  # first segment whose end >= x
    out = np.where(seg >= 8, 0x7F, (seg << 4) | ((x >> (seg + 1)) & 0xF))
    return (out ^ mask).astype(np.uint8)


def _alaw_encode_reference(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32) >> 3  # A-law works on 13-bit samples
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)
    seg = np.searchsorted(_ALAW_SEG_ENDS, x, side="left")
    low = np.where(seg < 2, (x >> 1) & 0xF, (x >> seg) & 0xF)
    out = np.where(seg >= 8, 0x7F, (seg << 4) | low)
    return (out ^ mask).astype(np.uint8)


def _ulaw_decode_reference(codes: np.ndarray) -> np.ndarray:
    u = (~codes.astype(np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _ULAW_BIAS
    t <<= (u & 0x70) >> 4
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_decode_reference(codes: np.ndarray) -> np.ndarray:
    a = codes.astype(np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
_ALL_CODES = np.arange(256, dtype=np.uint8)
# Indexed by the int16 sample reinterpreted as uint16 (so -1 is entry 65535).
_ULAW_ENC = np.empty(65536, np.uint8)
_ULAW_ENC[_ALL_INT16.view(np.uint16)] = _ulaw_encode_reference(_ALL_INT16)
_ALAW_ENC = np.empty(65536, np.uint8)
_ALAW_ENC[_ALL_INT16.view(np.uint16)] = _alaw_encode_reference(_ALL_INT16)
_ULAW_DEC = _ulaw_decode_reference(_ALL_CODES)
_ALAW_DEC = _alaw_decode_reference(_ALL_CODES)


def _as_int16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise BadAudio(f"G.711 encodes int16 samples, got {pcm.dtype}")
    return np.ascontiguousarray(pcm)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> μ-law bytes, one per sample."""
    return _ULAW_ENC[_as_int16(pcm).view(np.uint16)].tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> A-law bytes, one per sample."""
    return _ALAW_ENC[_as_int16(pcm).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 samples (a new array)."""
    return _ULAW_DEC[np.frombuffer(data, np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> int16 samples (a new array)."""
    return _ALAW_DEC[np.frombuffer(data, np.uint8)]


class G711Codec:
    """One law, by its SDP name: "PCMU" (μ-law, payload type 0) or "PCMA" (A-law, 8)."""

    RATE_HZ = 8000

    def __init__(self, name: str):
        if name.upper() not in ("PCMU", "PCMA"):
            raise ValueError(f"not a G.711 codec: {name!r}")
        self.name = name.upper()
        self.ulaw = self.name == "PCMU"
        self.silence_byte = ULAW_SILENCE if self.ulaw else ALAW_SILENCE

    def encode(self, pcm: np.ndarray) -> bytes:
        return ulaw_encode(pcm) if self.ulaw else alaw_encode(pcm)

    def decode(self, data: bytes) -> np.ndarray:
        return ulaw_decode(data) if self.ulaw else alaw_decode(data)
