"""End of turn without the model: the words rules, eagerness resolution, the combination policy,
and the per-session fallback when the audio model fails (tests/integration/test_smart_turn.py runs
the real ONNX)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from pydantic import ValidationError

from voice.asr.endpointing import (
    SILENCE_ONLY_MS,
    EndOfTurnDetector,
    TurnDetectionSettings,
    TurnSettings,
    combine,
)
from voice.asr.turn_words import words_verdict
from voice.batching import Superseded

SPEECH = np.full(16000, 0.1, dtype=np.float32)  # 1 s; the engines below never look at it

# -- words: incomplete ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Could I get a table for", "I'd like to speak to", "The capital of", "I'm calling about",
    "Can you help me with", "I want to go from", "It's bigger than", "Send it to me by",
    "Could I get a table for.",  # Whisper's period on an open phrase proves nothing
])
def test_ends_with_preposition_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


@pytest.mark.parametrize("text", ["I'd like a", "Book the", "Call my", "What about your", "Give me an."])
def test_ends_with_article_or_possessive_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


@pytest.mark.parametrize("text", ["I need a room and", "Tea or", "I'd go but", "I'm asking because",
                                  "Tell me if", "I was wondering whether", "We left early so"])
def test_ends_with_conjunction_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


@pytest.mark.parametrize("text", ["My name is", "The address is.", "The meeting was", "That would be",
                                  "I'm gonna", "The flights are"])
def test_ends_with_auxiliary_after_a_noun_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


@pytest.mark.parametrize("text", ["Um", "I'd like, uh", "So the thing is, um.", "Erm"])
def test_ends_with_filler_is_incomplete(text):
    verdict, reason = words_verdict(text)
    assert verdict == "incomplete"
    assert "filler" in reason or "','" in reason


@pytest.mark.parametrize("text", ["I'd like a table,", "Well...", "Monday; ", "The options are:",
                                  "I was thinking…", "Sure -"])
def test_ends_with_comma_dash_or_ellipsis_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


@pytest.mark.parametrize("text", ["My number is 5 5 5", "My phone number is 555 123.", "Five five five",
                                  "The zip code is 9 0 2", "My card number is 4111 1111", "It's 0 7 7 0 0"])
def test_number_still_being_dictated_is_incomplete(text):
    verdict, reason = words_verdict(text)
    assert verdict == "incomplete"
    assert "dictated" in reason


@pytest.mark.parametrize("text", ["Let me see.", "Hmm, let me think.", "Hold on.", "One second."])
def test_stalling_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


def test_reason_names_the_last_word():
    assert words_verdict("A table for")[1] == "ends with 'for'"


# -- words: complete -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Could I get a table?", "Could I get a table for six people on Sunday?", "Is it?"])
def test_question_mark_is_not_trusted(text):
    # Whisper puts "?" on question-shaped prefixes: "Could I get a table?" ... "for six people"
    assert words_verdict(text) == ("unknown", "ends with '?' (not trusted)")


@pytest.mark.parametrize("text", ["What is it for?", "Who are you waiting for?", "Where are you from?"])
def test_question_mark_keeps_a_stranded_preposition_from_counting_as_open(text):
    assert words_verdict(text)[0] == "unknown"


def test_question_mark_after_an_article_is_still_incomplete():
    assert words_verdict("Could I have the?")[0] == "incomplete"


@pytest.mark.parametrize("text", ["Thank you.", "That's all, thanks.", "Okay, bye.", "Two coffees, please.",
                                  "That's it."])
def test_closing_formula_is_complete(text):
    assert words_verdict(text)[0] == "complete"


@pytest.mark.parametrize("text", ["Yes.", "No", "Okay.", "Yeah, sure.", "That's right."])
def test_short_answer_is_complete(text):
    assert words_verdict(text)[0] == "complete"


def test_exclamation_is_complete():
    assert words_verdict("That's wonderful!")[0] == "complete"


# -- words: ambiguous endings stay open to the audio -----------------------------------------------


@pytest.mark.parametrize("text", ["Yes, it is.", "I think I would.", "Tell me where the station is.",
                                  "I don't know what time it is"])
def test_auxiliary_after_pronoun_or_in_embedded_question_is_not_incomplete(text):
    assert words_verdict(text)[0] == "unknown"


@pytest.mark.parametrize("text", ["Turn the lights on.", "Can you check me in.", "Let me in.",
                                  "Could you stop by.", "And so on."])
def test_phrasal_verb_particle_is_not_incomplete(text):
    assert words_verdict(text)[0] == "unknown"


@pytest.mark.parametrize("text", ["I think so.", "I hope so", "I told you so."])
def test_so_after_a_verb_of_thinking_is_not_incomplete(text):
    assert words_verdict(text)[0] == "unknown"


@pytest.mark.parametrize("text", ["Book a table for two.", "Table number 5.", "My number is 555 123 4567.",
                                  "I'd like a table for four people tonight."])
def test_finished_numbers_and_plain_clauses_are_unknown(text):
    assert words_verdict(text)[0] == "unknown"


@pytest.mark.parametrize("text", ["Could you please", "Can you please."])
def test_please_asking_for_more_is_incomplete(text):
    assert words_verdict(text)[0] == "incomplete"


def test_period_alone_is_not_trusted():
    assert words_verdict("I would like to book a table.") == ("unknown", "ends with '.' (not trusted)")


@pytest.mark.parametrize("text", ["", "   ", "...?", "\"\""])
def test_no_words_is_unknown(text):
    assert words_verdict(text)[0] == "unknown"


def test_curly_apostrophes_and_case_are_normalised():
    assert words_verdict("LET’S")[0] == "incomplete"


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eagerness", "max_ms", "threshold"), [
    ("low", 3000, 0.7), ("medium", 2000, 0.5), ("auto", 2000, 0.5), ("high", 1200, 0.3)])
def test_eagerness_sets_max_silence_and_threshold(eagerness, max_ms, threshold):
    s = TurnDetectionSettings(eagerness=eagerness)
    assert (s.effective_max_silence_ms, s.effective_threshold) == (max_ms, threshold)


def test_explicit_max_silence_and_threshold_override_eagerness():
    s = TurnDetectionSettings(eagerness="high", max_silence_ms=2500, threshold=0.6)
    assert (s.effective_max_silence_ms, s.effective_threshold) == (2500, 0.6)


def test_lower_eagerness_never_waits_less_or_needs_less():
    order = [TurnDetectionSettings(eagerness=e) for e in ("high", "medium", "low")]
    assert [s.effective_max_silence_ms for s in order] == sorted(s.effective_max_silence_ms for s in order)
    assert [s.effective_threshold for s in order] == sorted(s.effective_threshold for s in order)


def test_max_silence_below_complete_silence_is_refused():
    with pytest.raises(ValidationError, match="complete_silence_ms"):
        TurnDetectionSettings(complete_silence_ms=800, max_silence_ms=500)


@pytest.mark.parametrize("bad", [{"threshold": 1.0}, {"threshold": 0}, {"eagerness": "eager"},
                                 {"complete_silence_ms": -1}, {"mode": "vad"}, {"unknown_key": 1}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        TurnDetectionSettings(**bad)


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        TurnDetectionSettings().eagerness = "high"  # type: ignore[misc]


def test_turn_section_defaults_to_the_packaged_model_and_smart_mode():
    section = TurnSettings()
    assert section.model == "smart-turn-v3.2"
    assert section.defaults.mode == "smart"


@pytest.mark.parametrize("off", ["", "none", "None", None])
def test_turn_model_none_turns_the_audio_model_off(off):
    assert TurnSettings(model=off).model is None


def test_server_settings_carry_the_turn_section():
    from voice.config import load_settings

    s = load_settings(environ={"VOICE_TURN__DEFAULTS__EAGERNESS": "low", "VOICE_TURN__MODEL": "x.onnx"})
    assert (s.turn.model, s.turn.defaults.eagerness) == ("x.onnx", "low")


# -- combination ---------------------------------------------------------------------------------

AUTO = TurnDetectionSettings()


def test_incomplete_words_overrule_a_confident_audio_model():
    v = combine(0.99, "incomplete", "ends with 'for'", AUTO)
    assert not v.complete
    assert v.wait_ms == AUTO.effective_max_silence_ms
    assert v.probability < 0.5 and v.audio_probability == 0.99
    assert v.reason == "ends with 'for'; audio 0.99"


def test_complete_words_win_unless_the_audio_is_confidently_incomplete():
    assert combine(0.3, "complete", "closing 'thank you'", AUTO).complete
    assert not combine(0.02, "complete", "closing 'thank you'", AUTO).complete


def test_complete_words_raise_the_combined_probability():
    assert combine(0.3, "complete", "short answer 'yes'", AUTO).probability > 0.3


@pytest.mark.parametrize(("audio", "complete"), [(0.49, False), (0.5, True), (0.93, True), (0.1, False)])
def test_unknown_words_leave_the_audio_to_decide_at_the_threshold(audio, complete):
    v = combine(audio, "unknown", "ends with '.' (not trusted)", AUTO)
    assert v.complete is complete
    assert v.probability == audio


def test_complete_turn_waits_the_short_silence_and_incomplete_the_maximum():
    s = TurnDetectionSettings(complete_silence_ms=300, max_silence_ms=1800)
    assert combine(0.9, "unknown", "", s).wait_ms == 300
    assert combine(0.1, "unknown", "", s).wait_ms == 1800


def test_eagerness_moves_the_decision_for_the_same_audio():
    p = 0.6
    assert combine(p, "unknown", "", TurnDetectionSettings(eagerness="high")).complete
    assert combine(p, "unknown", "", TurnDetectionSettings(eagerness="medium")).complete
    assert not combine(p, "unknown", "", TurnDetectionSettings(eagerness="low")).complete


def test_without_audio_complete_words_end_the_turn_soon():
    v = combine(None, "complete", "closing 'bye'", AUTO)
    assert (v.complete, v.wait_ms, v.audio_probability) == (True, AUTO.complete_silence_ms, None)


def test_without_audio_unknown_words_wait_todays_fixed_silence():
    v = combine(None, "unknown", "ends with '.' (not trusted)", AUTO)
    assert (v.complete, v.wait_ms) == (False, SILENCE_ONLY_MS)
    assert "no audio model" in v.reason


def test_without_audio_the_fixed_silence_never_exceeds_the_maximum():
    s = TurnDetectionSettings(complete_silence_ms=100, max_silence_ms=300)
    assert combine(None, "unknown", "", s).wait_ms == 300


# -- the detector --------------------------------------------------------------------------------


class FixedEngine:
    """Stands in for SmartTurnEngine's interface: answers a fixed probability and counts calls."""

    def __init__(self, probability: float) -> None:
        self.p = probability
        self.calls = 0

    async def probability(self, audio_16k, *, key=None) -> float:
        self.calls += 1
        return self.p


class BrokenEngine(FixedEngine):
    """An engine whose inference fails, like an ONNX runtime error."""

    async def probability(self, audio_16k, *, key=None) -> float:
        self.calls += 1
        raise RuntimeError("ONNXRuntimeError: broken")


async def test_detector_combines_audio_and_words():
    detector = EndOfTurnDetector(FixedEngine(0.95), AUTO)  # type: ignore[arg-type]
    v = await detector.judge(SPEECH, "I would like to book a table.")
    assert (v.complete, v.audio_probability, v.words, v.wait_ms) == (True, 0.95, "unknown", 250)


async def test_detector_skips_the_audio_model_when_the_words_are_open():
    engine = FixedEngine(0.99)
    v = await EndOfTurnDetector(engine, AUTO).judge(SPEECH, "a table for")  # type: ignore[arg-type]
    assert not v.complete and engine.calls == 0


async def test_engine_failure_is_logged_once_and_the_session_goes_on_with_words(caplog):
    broken = BrokenEngine(0.0)
    detector = EndOfTurnDetector(broken, AUTO)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="voice.asr.endpointing"):
        first = await detector.judge(SPEECH, "Okay, thank you.")
        second = await detector.judge(SPEECH, "I would like a table.")
    assert first.complete and first.audio_probability is None
    assert second.wait_ms == SILENCE_ONLY_MS and not second.complete
    assert broken.calls == 1, "the failed model is not asked again in this session"
    assert len([r for r in caplog.records if "audio model failed" in r.message]) == 1


async def test_one_sessions_failure_leaves_the_other_sessions_on_the_model():
    broken, healthy = BrokenEngine(0.0), FixedEngine(0.9)
    a = EndOfTurnDetector(broken, AUTO)  # type: ignore[arg-type]
    b = EndOfTurnDetector(healthy, AUTO)  # type: ignore[arg-type]
    va, vb = await asyncio.gather(a.judge(SPEECH, "Fine."), b.judge(SPEECH, "Fine."))
    assert va.audio_probability is None and a.audio_failed
    assert vb.audio_probability == 0.9 and not b.audio_failed


async def test_superseded_question_falls_back_without_disabling_the_model():
    class SupersededEngine(FixedEngine):
        async def probability(self, audio_16k, *, key=None) -> float:
            raise Superseded("newer")

    detector = EndOfTurnDetector(SupersededEngine(0.5), AUTO)  # type: ignore[arg-type]
    v = await detector.judge(SPEECH, "I would like a table.")
    assert v.audio_probability is None and not detector.audio_failed


async def test_slow_engine_times_out_to_the_words(monkeypatch):
    class SlowEngine(FixedEngine):
        async def probability(self, audio_16k, *, key=None) -> float:
            await asyncio.sleep(10)
            return 1.0

    monkeypatch.setattr("voice.asr.endpointing.AUDIO_TIMEOUT_MS", 20.0)
    detector = EndOfTurnDetector(SlowEngine(1.0), AUTO)  # type: ignore[arg-type]
    v = await detector.judge(SPEECH, "Yes, please.")
    assert v.complete and v.audio_probability is None and not detector.audio_failed


async def test_no_engine_means_words_and_silence():
    v = await EndOfTurnDetector(None, AUTO).judge(SPEECH, "That's all, thanks.")
    assert v.complete and v.audio_probability is None


async def test_empty_audio_is_not_sent_to_the_model():
    engine = FixedEngine(0.9)
    v = await EndOfTurnDetector(engine, AUTO).judge(np.zeros(0, np.float32), "Fine.")  # type: ignore[arg-type]
    assert engine.calls == 0 and v.audio_probability is None


async def test_judge_never_raises_on_bad_text():
    v = await EndOfTurnDetector(FixedEngine(0.9), AUTO).judge(SPEECH, None)  # type: ignore[arg-type]
    assert v.words == "unknown" and v.audio_probability == 0.9


async def test_silence_mode_waits_a_fixed_silence_and_asks_nobody():
    engine = FixedEngine(0.0)
    detector = EndOfTurnDetector(engine, TurnDetectionSettings(mode="silence"))  # type: ignore[arg-type]
    v = await detector.judge(SPEECH, "a table for")
    assert (v.complete, v.wait_ms, engine.calls) == (True, SILENCE_ONLY_MS, 0)
    detector.retune(TurnDetectionSettings(mode="silence", max_silence_ms=800))
    assert (await detector.judge(SPEECH, "")).wait_ms == 800


async def test_retune_changes_the_next_verdict():
    detector = EndOfTurnDetector(FixedEngine(0.6), TurnDetectionSettings(eagerness="low"))  # type: ignore[arg-type]
    assert not (await detector.judge(SPEECH, "I would like a table.")).complete
    detector.retune(TurnDetectionSettings(eagerness="high"))
    assert (await detector.judge(SPEECH, "I would like a table.")).complete


def test_a_sure_complete_waits_the_short_silence_and_a_doubtful_one_waits_longer():
    sure = combine(0.95, "unknown", "", AUTO)
    doubtful = combine(0.55, "unknown", "", AUTO)
    borderline = combine(0.5, "unknown", "", AUTO)
    assert sure.complete and doubtful.complete and borderline.complete
    assert sure.wait_ms == AUTO.complete_silence_ms
    assert AUTO.complete_silence_ms < doubtful.wait_ms < borderline.wait_ms
    assert borderline.wait_ms == (AUTO.complete_silence_ms + AUTO.effective_max_silence_ms) / 2
