"""Smart Turn v3.2 with the real ONNX from the pipecat-ai wheel: input features, batching, scores.

Skips (naming the package) when the model or the speech data is not installed.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from piper_speech import SENTENCES, synthesize
from speech_data import librivox_clips, load_wav_16k, model_path_or_skip

from voice.asr.endpointing import EndOfTurnDetector, TurnDetectionSettings
from voice.asr.smart_turn import N_FRAMES, N_MELS, WINDOW_SAMPLES, SmartTurnEngine, SmartTurnFeatures, SmartTurnModel
from voice.codecs.resample import resample

RATE_HZ = 16000
TRAIL_SILENCE = np.zeros(RATE_HZ // 5, np.float32)  # 200 ms: about when a VAD asks "is the turn over?"


@pytest.fixture(scope="module")
def model_file():
    return model_path_or_skip("smart-turn-v3.2")


@pytest.fixture(scope="module")
def model(model_file):
    return SmartTurnModel(model_file)


@pytest.fixture(scope="module")
def clip():
    clips = librivox_clips()
    if not clips:
        pytest.skip("speech test data missing: apt-get install pocketsphinx-testdata")
    return load_wav_16k(clips[0][0])


def transformers_features(audio: np.ndarray) -> np.ndarray:
    """pipecat's reference path (its vendored numpy code replicates exactly this call)."""
    from transformers import WhisperFeatureExtractor

    window = audio[-WINDOW_SAMPLES:]
    window = np.pad(window, (WINDOW_SAMPLES - len(window), 0))
    extractor = WhisperFeatureExtractor(chunk_length=8)
    out = extractor(window, sampling_rate=RATE_HZ, return_tensors="np", padding="max_length",
                    max_length=WINDOW_SAMPLES, truncation=True, do_normalize=True)
    return out.input_features[0]


@pytest.mark.parametrize("seconds", [3.0, 12.0])
def test_features_equal_pipecats_whisper_feature_extractor(clip, seconds):
    audio = np.resize(clip, int(seconds * RATE_HZ))  # 12 s: repeated, so the last-8-s cut matters
    ours = SmartTurnFeatures()(audio)
    assert ours.shape == (N_MELS, N_FRAMES) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, transformers_features(audio), atol=1e-4)


def test_short_audio_is_zero_padded_at_the_start(clip):
    features = SmartTurnFeatures()
    one_second = clip[:RATE_HZ]
    padded = features(one_second)
    np.testing.assert_allclose(padded, features(np.concatenate([np.zeros(RATE_HZ * 3, np.float32), one_second])),
                               atol=1e-5)
    assert np.ptp(padded[:, :600], axis=1).max() < 1e-3, "the first 6 s are padding: constant in time"
    assert np.ptp(padded[:, -90:], axis=1).max() > 0.5, "the speech is at the end"


def test_only_the_last_eight_seconds_count(clip):
    features = SmartTurnFeatures()
    audio = np.resize(clip, 10 * RATE_HZ)
    noisy_start = audio.copy()
    noisy_start[: RATE_HZ] = np.random.default_rng(0).normal(0, 0.3, RATE_HZ)
    np.testing.assert_array_equal(features(audio), features(noisy_start))


def _word_ends(whisper, audio: np.ndarray) -> list[tuple[str, float]]:
    segments, _ = whisper.transcribe(audio, language="en", word_timestamps=True, beam_size=1)
    return [(w.word.strip(), w.end) for s in segments for w in s.words]


@pytest.fixture(scope="module")
def piper_pairs():
    """(whole sentence, its first half cut at the middle word boundary), 16 kHz + 200 ms silence."""
    model_path_or_skip("piper-joe")
    from faster_whisper import WhisperModel

    whisper = WhisperModel(str(model_path_or_skip("whisper-tiny.en")), device="cpu", compute_type="int8",
                           cpu_threads=1)
    pairs = []
    for text in SENTENCES:
        pcm, rate = synthesize(text)
        audio = resample(pcm.astype(np.float32) / 32768, rate, RATE_HZ)
        words = _word_ends(whisper, audio)
        cut = int(words[len(words) // 2 - 1][1] * RATE_HZ)
        pairs.append((np.concatenate([audio, TRAIL_SILENCE]), np.concatenate([audio[:cut], TRAIL_SILENCE])))
    return pairs


def test_whole_sentences_score_higher_than_their_cut_first_halves(model, piper_pairs):
    whole = np.array([model.score([w])[0] for w, _ in piper_pairs])
    halves = np.array([model.score([h])[0] for _, h in piper_pairs])
    assert (whole > halves).mean() >= 0.75, (whole, halves)
    assert whole.mean() - halves.mean() > 0.1, (whole, halves)
    assert np.all((whole >= 0) & (whole <= 1)) and np.all((halves >= 0) & (halves <= 1))


def test_a_batch_of_three_equals_one_by_one(model, piper_pairs):
    audios = [piper_pairs[0][0], piper_pairs[1][1], piper_pairs[2][0][: RATE_HZ * 2]]
    together = model.score(audios)
    alone = [model.score([a])[0] for a in audios]
    np.testing.assert_allclose(together, alone, atol=1e-4)


async def test_engine_batches_sessions_and_isolates_a_bad_input(model_file, piper_pairs):
    engine = SmartTurnEngine(model_file, window_ms=20.0)
    try:
        good = [piper_pairs[0][0], piper_pairs[1][1]]
        bad = np.full(RATE_HZ, np.nan, np.float32)
        results = await asyncio.gather(*(engine.probability(a) for a in [good[0], bad, good[1]]),
                                       return_exceptions=True)
        assert isinstance(results[1], ValueError)
        np.testing.assert_allclose([results[0], results[2]], engine.model.score(good), atol=1e-4)
        stats = engine.stats()
        assert stats.items == 3 and stats.batches == 1, stats
    finally:
        engine.close()


async def test_detectors_share_the_engine_and_a_broken_session_falls_back_alone(model_file, piper_pairs):
    engine = SmartTurnEngine(model_file)
    try:
        broken = EndOfTurnDetector(engine, TurnDetectionSettings())
        healthy = EndOfTurnDetector(engine, TurnDetectionSettings())
        bad = np.full(RATE_HZ, np.inf, np.float32)
        vb, vh = await asyncio.gather(broken.judge(bad, "Fine then."),
                                      healthy.judge(piper_pairs[0][0], "I would like to book a table."))
        assert broken.audio_failed and vb.audio_probability is None
        assert not healthy.audio_failed and vh.audio_probability is not None and vh.complete
        half = await healthy.judge(piper_pairs[0][1], "I would like to book.")  # the words say nothing
        assert half.words == "unknown" and not half.complete, half
    finally:
        engine.close()
