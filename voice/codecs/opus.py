"""Opus encode/decode (libopus through opuslib), mono int16 PCM.

One packet is one frame (20 ms by default). Decoders accept packets of any legal duration
(up to 120 ms) and conceal lost packets with libopus PLC. opuslib's OpusError never escapes:
malformed input raises BadAudio.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import opuslib
import opuslib.api.decoder

from voice.codecs import BadAudio

OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
FRAME_MS_CHOICES = (2.5, 5.0, 10.0, 20.0, 40.0, 60.0)
MAX_PACKET_MS = 120  # longest frame an Opus packet can carry
MAX_PACKET_BYTES = 1275 * 3 + 7
_APPLICATIONS = {
    "voip": opuslib.APPLICATION_VOIP,
    "audio": opuslib.APPLICATION_AUDIO,
    "restricted_lowdelay": opuslib.APPLICATION_RESTRICTED_LOWDELAY,
}


def _check_rate(sample_rate_hz: int) -> None:
    if sample_rate_hz not in OPUS_RATES_HZ:
        raise ValueError(f"Opus supports {OPUS_RATES_HZ} Hz, not {sample_rate_hz}")


class OpusEncoder:
    """Encodes exactly one frame of mono int16 PCM per call into one Opus packet."""

    def __init__(
        self,
        sample_rate_hz: int,
        frame_ms: float = 20.0,
        bitrate_bps: int = 32000,
        application: Literal["voip", "audio", "restricted_lowdelay"] = "voip",
    ) -> None:
        _check_rate(sample_rate_hz)
        if frame_ms not in FRAME_MS_CHOICES:
            raise ValueError(f"Opus frame_ms must be one of {FRAME_MS_CHOICES}, not {frame_ms}")
        self.sample_rate_hz = sample_rate_hz
        self.frame_ms = frame_ms
        self.frame_samples = int(sample_rate_hz * frame_ms / 1000)
        self._encoder = opuslib.Encoder(sample_rate_hz, 1, _APPLICATIONS[application])
        self._encoder.bitrate = bitrate_bps

    def encode(self, frame: np.ndarray) -> bytes:
        """One frame of `frame_samples` int16 samples -> one Opus packet."""
        if frame.dtype != np.int16 or frame.shape != (self.frame_samples,):
            raise ValueError(f"expected {self.frame_samples} int16 samples, got {frame.dtype} {frame.shape}")
        return self._encoder.encode(frame.astype("<i2").tobytes(), self.frame_samples)


class OpusDecoder:
    """Decodes Opus packets of one stream to mono int16 PCM at `sample_rate_hz`."""

    def __init__(self, sample_rate_hz: int) -> None:
        _check_rate(sample_rate_hz)
        self.sample_rate_hz = sample_rate_hz
        self._max_samples = sample_rate_hz * MAX_PACKET_MS // 1000
        self._last_samples = sample_rate_hz // 50  # 20 ms until a packet tells us otherwise
        self._decoder = opuslib.Decoder(sample_rate_hz, 1)

    def decode(self, packet: bytes) -> np.ndarray:
        """One packet -> its int16 samples. Raises BadAudio for an empty or malformed packet."""
        if not packet or len(packet) > MAX_PACKET_BYTES:
            raise BadAudio(f"Opus packet of {len(packet)} bytes is not valid")
        pcm = self._run(packet, self._max_samples)
        self._last_samples = len(pcm)
        return pcm

    def decode_lost(self, samples: int | None = None) -> np.ndarray:
        """Packet-loss concealment for one missing packet: `samples` (default: the length of the
        last decoded packet) of plausible continuation, fading out over successive losses."""
        count = self._last_samples if samples is None else samples
        return self._run(None, count)

    def _run(self, packet: bytes | None, frame_size: int) -> np.ndarray:
        try:
            state = self._decoder.decoder_state
            pcm = opuslib.api.decoder.decode(state, packet, len(packet or b""), frame_size, False, channels=1)
        except opuslib.OpusError as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise BadAudio(f"Opus decode failed: {reason}") from exc
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16)
