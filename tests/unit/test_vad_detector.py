"""VadDetector: scripted window probabilities -> speech start/end positions (in samples).

Defaults: threshold 0.5, neg_threshold 0.35, min_speech 250 ms (8 windows of 32 ms),
min_silence 500 ms (16 windows), pad 200 ms (3200 samples).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voice.asr.vad import WINDOW_SAMPLES, SpeechEnd, SpeechStart, VadDetector, VadSettings

W = WINDOW_SAMPLES
PAD = 3200


def run(probs: list[float], settings: VadSettings | None = None, *, flush: bool = False):
    detector = VadDetector(settings or VadSettings())
    events = [e for p in probs if (e := detector.push(p)) is not None]
    if flush and (e := detector.flush()) is not None:
        events.append(e)
    return events


def silence(windows: int) -> list[float]:
    return [0.05] * windows


def speech(windows: int) -> list[float]:
    return [0.9] * windows


def test_speech_longer_than_min_speech_starts_at_onset_minus_pad():
    events = run(silence(20) + speech(10))
    assert events == [SpeechStart(20 * W - PAD)]


def test_start_is_reported_once_min_speech_has_passed():
    assert run(silence(20) + speech(7)) == []
    assert len(run(silence(20) + speech(8))) == 1


def test_blip_shorter_than_min_speech_is_ignored():
    assert run(silence(20) + speech(5) + silence(40)) == []


def test_speech_ends_after_min_silence_at_silence_start_plus_pad():
    events = run(silence(20) + speech(30) + silence(16))
    assert events[1:] == [SpeechEnd(50 * W + PAD)]


def test_silence_shorter_than_min_silence_does_not_end_speech():
    events = run(silence(20) + speech(30) + silence(15) + speech(10) + silence(10))
    assert [type(e) for e in events] == [SpeechStart]


def test_probability_between_thresholds_keeps_speech_going_until_min_silence():
    # 0.4 is below threshold (0.5) but above neg_threshold (0.35): still speech
    events = run(silence(20) + speech(10) + [0.4] * 40)
    assert [type(e) for e in events] == [SpeechStart]


def test_probability_between_thresholds_does_not_start_speech():
    assert run(silence(10) + [0.45] * 40) == []


def test_start_never_reaches_back_before_the_previous_end():
    settings = VadSettings(min_silence_ms=100)  # a 7-window gap is shorter than the two pads
    events = run(silence(20) + speech(20) + silence(7) + speech(10), settings)
    first_end, second_start = events[1], events[2]
    assert isinstance(second_start, SpeechStart)
    assert second_start.at_sample == first_end.at_sample


def test_start_is_clamped_at_stream_start():
    assert run(speech(10)) == [SpeechStart(0)]


def test_end_is_never_after_the_audio_scored():
    settings = VadSettings(min_silence_ms=50, speech_pad_ms=500)
    events = run(silence(2) + speech(10) + silence(2), settings)
    assert events[-1] == SpeechEnd(14 * W)


def test_flush_closes_speech_in_progress_at_end_of_input():
    events = run(silence(20) + speech(12), flush=True)
    assert events[-1] == SpeechEnd(32 * W)


def test_flush_during_trailing_silence_ends_at_silence_start_plus_pad():
    events = run(silence(20) + speech(12) + silence(10), flush=True)
    assert events[-1] == SpeechEnd(32 * W + PAD)


def test_flush_drops_an_unconfirmed_onset():
    assert run(silence(20) + speech(3), flush=True) == []


def test_custom_settings_change_timing():
    settings = VadSettings(min_speech_ms=64, min_silence_ms=96, speech_pad_ms=0)
    events = run(silence(4) + speech(2) + silence(3), settings)
    assert events == [SpeechStart(4 * W), SpeechEnd(6 * W)]


def test_neg_threshold_defaults_to_threshold_minus_hysteresis():
    assert VadSettings(threshold=0.6).effective_neg_threshold == pytest.approx(0.45)
    assert VadSettings(threshold=0.1).effective_neg_threshold == pytest.approx(0.01)


def test_settings_reject_neg_threshold_above_threshold():
    with pytest.raises(ValidationError):
        VadSettings(threshold=0.5, neg_threshold=0.6)


@pytest.mark.parametrize("field,value", [("threshold", 1.2), ("min_silence_ms", -1), ("speech_pad_ms", 5000)])
def test_settings_reject_out_of_range_values(field, value):
    with pytest.raises(ValidationError):
        VadSettings(**{field: value})
