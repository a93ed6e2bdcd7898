"""Client audio in (voice/pipeline/audio_in.py) under any order of audio and end_of_input flushes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.codecs import BadAudio
from voice.codecs.opus import OpusEncoder
from voice.pipeline.audio_in import EARS_RATE_HZ, AudioInput

FORMATS = [("opus", 48000), ("opus", 16000), ("pcm16", 8000), ("pcm16", 16000), ("pcm16", 48000), ("pcm16", 44100)]


def tone_20ms(rate_hz: int) -> np.ndarray:
    t = np.arange(rate_hz // 50) / rate_hz
    return (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def payload(codec: str, rate_hz: int, encoder: OpusEncoder | None) -> bytes:
    pcm = tone_20ms(rate_hz)
    return encoder.encode(pcm) if encoder else pcm.astype("<i2").tobytes()


@pytest.mark.parametrize(("codec", "rate_hz"), FORMATS)
def test_audio_and_a_second_end_of_input_after_a_flush_are_handled(codec, rate_hz):
    # issue 13 item 2: a resampled stream raised soxr's "Input after last input" here
    audio_in = AudioInput(codec, rate_hz)
    encoder = OpusEncoder(rate_hz, frame_ms=20) if codec == "opus" else None
    out = 0
    for _ in range(3):
        for _ in range(10):
            out += len(audio_in.decode(payload(codec, rate_hz, encoder)))
        out += len(audio_in.flush())
        out += len(audio_in.flush())  # end_of_input twice in a row
    expected = 3 * 10 * EARS_RATE_HZ // 50  # 600 ms at 16 kHz
    assert abs(out - expected) <= 3 * 8, (out, expected)  # each flush may round by a few samples


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FORMATS), st.lists(st.one_of(st.just("audio"), st.just("flush"), st.binary(max_size=120)),
                                          max_size=25))
def test_any_order_of_audio_garbage_and_flushes_gives_samples_or_bad_audio(fmt, steps):
    codec, rate_hz = fmt
    audio_in = AudioInput(codec, rate_hz)
    encoder = OpusEncoder(rate_hz, frame_ms=20) if codec == "opus" else None
    for step in steps:
        try:
            if step == "flush":
                samples = audio_in.flush()
            else:
                samples = audio_in.decode(payload(codec, rate_hz, encoder) if step == "audio" else step)
        except BadAudio:
            continue
        assert samples.dtype == np.float32 and np.all(np.isfinite(samples))
