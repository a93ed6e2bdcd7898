"""G.711 μ-law and A-law: the ITU reference behaviour, checked against Python 3.11's audioop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voice.codecs import BadAudio
from voice.codecs.g711 import ALAW_SILENCE, ULAW_SILENCE, G711Codec, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


@pytest.fixture(scope="module")
def audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            pytest.skip("audioop is gone (Python >= 3.13); the ITU vectors below still run")
    return audioop


def test_ulaw_encoding_matches_audioop_for_every_int16(audioop):
    assert ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2)


def test_alaw_encoding_matches_audioop_for_every_int16(audioop):
    assert alaw_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.astype("<i2").tobytes(), 2)


def test_ulaw_decoding_matches_audioop_for_every_code(audioop):
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), "<i2")
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_alaw_decoding_matches_audioop_for_every_code(audioop):
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), "<i2")
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), expected)


# ITU-T G.711 tables: code -> decoded value (μ-law in 14-bit units x4, A-law in 13-bit units x8).
@pytest.mark.parametrize(("code", "value"), [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8), (0xEF, 132),
                                             (0x80, 32124), (0x00, -32124)])
def test_ulaw_itu_table_values(code, value):
    assert int(ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(("code", "value"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)])
def test_alaw_itu_table_values(code, value):
    assert int(alaw_decode(bytes([code]))[0]) == value


def test_silence_encodes_to_the_idle_codes():
    zeros = np.zeros(4, np.int16)
    assert ulaw_encode(zeros) == bytes([ULAW_SILENCE]) * 4
    assert alaw_encode(zeros) == bytes([ALAW_SILENCE]) * 4


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_every_code_survives_decode_then_encode(law):
    codec = G711Codec(law)
    codes = bytes(c for c in ALL_CODES if not (law == "PCMU" and c == 0x7F))  # -0 and +0 both decode to 0
    assert codec.encode(codec.decode(codes)) == codes


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_round_trip_error_is_within_the_segment_step(law):
    codec = G711Codec(law)
    decoded = codec.decode(codec.encode(ALL_INT16)).astype(np.int32)
    error = np.abs(decoded - ALL_INT16.astype(np.int32))
    # logarithmic: the error grows with the magnitude, at most half a step of the top segment
    assert error.max() <= 1024
    small = np.abs(ALL_INT16.astype(np.int32)) < 256
    assert error[small].max() <= 16


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_a_sine_round_trips_with_high_snr(law):
    t = np.arange(8000) / 8000
    sine = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    codec = G711Codec(law)
    out = codec.decode(codec.encode(sine)).astype(np.float64)
    snr_db = 10 * np.log10(np.sum(sine.astype(np.float64) ** 2) / np.sum((out - sine) ** 2))
    assert snr_db > 33  # G.711's ~38 dB for a loud signal


def test_encoding_refuses_float_samples():
    with pytest.raises(BadAudio):
        ulaw_encode(np.zeros(4, np.float32))


def test_unknown_codec_name_is_refused():
    with pytest.raises(ValueError):
        G711Codec("G722")
