"""PCM16 conversion, soxr resampling (streaming == one-shot), Opus round trip and bad packets."""

from __future__ import annotations

import numpy as np
import pytest

from voice.codecs import BadAudio
from voice.codecs.opus import OpusDecoder, OpusEncoder
from voice.codecs.pcm import bytes_to_float32, float32_to_bytes, float32_to_int16, int16_to_float32
from voice.codecs.resample import StreamResampler, resample


def voice_like(sample_rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    """A vowel-ish test signal: 150 Hz harmonics under a 4 Hz syllable envelope, float32."""
    t = np.arange(int(sample_rate_hz * seconds)) / sample_rate_hz
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20) if 150 * k < sample_rate_hz / 2.2)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.25 * tone * envelope).astype(np.float32)


def best_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> float:
    """Highest normalized correlation over codec delays 0..max_lag samples."""
    best = -1.0
    n = len(reference) - max_lag
    for lag in range(max_lag + 1):
        a, b = reference[:n], decoded[lag : lag + n]
        best = max(best, float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return best


# -- PCM -----------------------------------------------------------------------------------------


def test_pcm_bytes_round_trip_is_exact_for_int16_values():
    samples = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    data = samples.astype("<i2").tobytes()
    assert float32_to_bytes(bytes_to_float32(data)) == data


def test_float_to_int16_clips_instead_of_wrapping():
    assert float32_to_int16(np.array([2.0, -2.0], dtype=np.float32)).tolist() == [32767, -32768]


def test_int16_full_scale_maps_to_minus_one():
    assert int16_to_float32(np.array([-32768], dtype=np.int16))[0] == -1.0


def test_odd_byte_count_is_bad_audio():
    with pytest.raises(BadAudio):
        bytes_to_float32(b"\x00\x01\x02")


# -- resampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_hz,out_hz", [(48000, 16000), (16000, 24000), (8000, 16000), (24000, 48000)])
def test_streaming_resampler_matches_one_shot(in_hz, out_hz):
    signal = voice_like(in_hz)
    stream = StreamResampler(in_hz, out_hz)
    chunk = in_hz // 50  # 20 ms
    pieces = [stream.process(signal[i : i + chunk]) for i in range(0, len(signal), chunk)]
    streamed = np.concatenate([*pieces, stream.flush()])
    whole = resample(signal, in_hz, out_hz)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_resampled_length_follows_the_rate_ratio():
    assert len(resample(np.zeros(48000, dtype=np.float32), 48000, 16000)) == 16000


def test_same_rate_is_passthrough():
    signal = voice_like(16000, 0.1)
    stream = StreamResampler(16000, 16000)
    assert np.array_equal(stream.process(signal), signal)
    assert len(stream.flush()) == 0


def test_stream_resampler_handles_int16():
    stream = StreamResampler(48000, 16000, dtype=np.int16)
    out = np.concatenate([stream.process(np.zeros(960, dtype=np.int16)), stream.flush()])
    assert out.dtype == np.int16 and abs(len(out) - 320) <= 2


# -- Opus ----------------------------------------------------------------------------------------


def opus_round_trip(rate_hz: int, application: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, decoded) as float32, 20 ms packets of the voice-like signal."""
    encoder, decoder = OpusEncoder(rate_hz, application=application), OpusDecoder(rate_hz)
    signal = float32_to_int16(voice_like(rate_hz))
    frame = encoder.frame_samples
    starts = range(0, len(signal) - frame + 1, frame)
    decoded = np.concatenate([decoder.decode(encoder.encode(signal[i : i + frame])) for i in starts])
    assert len(decoded) == len(signal) // frame * frame
    return int16_to_float32(signal), int16_to_float32(decoded)


def envelope(x: np.ndarray, rate_hz: int) -> np.ndarray:
    frame = rate_hz // 100  # 10 ms RMS
    n = len(x) // frame
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))


@pytest.mark.parametrize("rate_hz", [48000, 24000, 16000])
def test_opus_round_trip_matches_the_waveform(rate_hz):
    # CELT ("audio") keeps the waveform; 10 ms covers the codec delay (6.5 ms at any rate)
    signal, decoded = opus_round_trip(rate_hz, "audio")
    assert best_correlation(signal, decoded, max_lag=rate_hz // 100) > 0.95


@pytest.mark.parametrize("rate_hz", [48000, 24000, 16000])
def test_opus_voip_round_trip_keeps_the_speech_envelope(rate_hz):
    # SILK ("voip") models speech rather than the waveform (waveform correlation ~0.88 here),
    # so compare the loudness contour and a looser waveform correlation
    signal, decoded = opus_round_trip(rate_hz, "voip")
    assert best_correlation(signal, decoded, max_lag=rate_hz // 100) > 0.75
    assert best_correlation(envelope(signal, rate_hz), envelope(decoded, rate_hz), max_lag=1) > 0.95


def test_one_packet_per_20_ms_frame():
    encoder = OpusEncoder(48000)
    assert encoder.frame_samples == 960
    assert 0 < len(encoder.encode(np.zeros(960, dtype=np.int16))) < 200


def test_encoder_rejects_a_wrong_frame_length():
    with pytest.raises(ValueError):
        OpusEncoder(16000).encode(np.zeros(100, dtype=np.int16))


def test_encoder_rejects_float_samples():
    with pytest.raises(ValueError):
        OpusEncoder(16000).encode(np.zeros(320, dtype=np.float32))


def test_unsupported_sample_rate_is_refused():
    with pytest.raises(ValueError):
        OpusDecoder(44100)


@pytest.mark.parametrize("packet", [b"\xff\xff\xff", b"\x03\xff", b""])
def test_malformed_packet_raises_bad_audio(packet):
    with pytest.raises(BadAudio):
        OpusDecoder(48000).decode(packet)


def test_decoder_still_works_after_a_bad_packet():
    encoder, decoder = OpusEncoder(16000), OpusDecoder(16000)
    with pytest.raises(BadAudio):
        decoder.decode(b"\xff\xff\xff")
    assert len(decoder.decode(encoder.encode(np.zeros(320, dtype=np.int16)))) == 320


def test_lost_packet_concealment_has_the_last_packets_length():
    encoder, decoder = OpusEncoder(24000, frame_ms=10), OpusDecoder(24000)
    signal = float32_to_int16(voice_like(24000, 0.1))
    for i in range(0, 240 * 5, 240):
        decoder.decode(encoder.encode(signal[i : i + 240]))
    concealed = decoder.decode_lost()
    assert len(concealed) == 240
    assert np.abs(concealed).max() > 0  # continues the signal, not silence
