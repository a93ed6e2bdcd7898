"""Silero VAD on real speech: segment boundaries, batched inference across streams.

Both ONNX layouts are exercised: "silero-vad-pkg" (batches streams in one call) and faster-whisper's
bundled "silero-vad" (one call per stream).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from speech_data import DATA_HINT, librivox_clips, load_wav_16k, model_path_or_skip

from voice.asr.vad import (
    CONTEXT_SAMPLES,
    WINDOW_SAMPLES,
    SileroVad,
    SpeechEnd,
    SpeechStart,
    VadEngine,
    VadSettings,
    VadStream,
)

pytestmark = pytest.mark.timeout(120)

SR = 16000
CHUNK = 320  # 20 ms
TOLERANCE_MS = 300


@pytest.fixture(scope="module", params=["silero-vad-pkg", "silero-vad"])
def engine(request):
    eng = VadEngine(model_path_or_skip(request.param))
    yield eng
    eng.close()


def clip(name_part: str) -> np.ndarray:
    matches = [p for p, _ in librivox_clips() if name_part in p.name]
    if not matches:
        pytest.skip(DATA_HINT)
    return load_wav_16k(matches[0])


def padded(audio: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    silence = np.zeros(int(SR * seconds), dtype=np.float32)
    return np.concatenate([silence, audio, silence])


def energy_bounds_ms(audio: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame louder than halfway (in dB) between the noise floor and the peak."""
    frame = SR // 100
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    level = 20 * np.log10(rms + 1e-9)
    speech_frames = np.nonzero(level > (np.percentile(level, 10) + level.max()) / 2)[0]
    return speech_frames[0] * 10.0, (speech_frames[-1] + 1) * 10.0


async def vad_events(engine: VadEngine, audio: np.ndarray) -> list:
    stream = VadStream(engine)
    events = []
    for i in range(0, len(audio), CHUNK):
        events += await stream.process(audio[i : i + CHUNK])
    return events + stream.flush()


@pytest.mark.parametrize("clip_id", ["0880", "0930"])
async def test_padded_clip_gives_exactly_one_speech_segment(engine, clip_id):
    events = await vad_events(engine, padded(clip(clip_id)))
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


@pytest.mark.parametrize("clip_id", ["0880", "0930"])
async def test_segment_boundaries_are_within_300_ms_of_the_energy_boundaries(engine, clip_id):
    audio = clip(clip_id)
    start, end = await vad_events(engine, padded(audio))
    pad_ms = VadSettings().speech_pad_ms
    energy_start_ms, energy_end_ms = energy_bounds_ms(audio)
    assert abs(start.at_sample / 16 + pad_ms - (1000 + energy_start_ms)) <= TOLERANCE_MS
    assert abs(end.at_sample / 16 - pad_ms - (1000 + energy_end_ms)) <= TOLERANCE_MS


async def test_silence_gives_no_speech(engine):
    assert await vad_events(engine, np.zeros(3 * SR, dtype=np.float32)) == []


async def test_white_noise_gives_no_speech(engine):
    noise = np.random.default_rng(1).normal(0, 0.03, 3 * SR).astype(np.float32)
    assert await vad_events(engine, noise) == []


def test_batched_inference_equals_one_stream_at_a_time():
    model = SileroVad(model_path_or_skip("silero-vad-pkg"))
    assert model.batches_streams
    audio = clip("0870")
    size = CONTEXT_SAMPLES + WINDOW_SAMPLES
    inputs = np.stack([audio[8000 + i * 700 : 8000 + i * 700 + size] for i in range(8)])
    states = np.random.default_rng(0).normal(0, 0.1, (8, 2, 128)).astype(np.float32)
    probs, new_states = model.infer(inputs, states)
    for b in range(8):
        p, s = model.infer(inputs[b : b + 1], states[b : b + 1])
        assert p[0] == pytest.approx(probs[b], abs=1e-5)
        assert np.allclose(s[0], new_states[b], atol=1e-5)


async def test_concurrent_sessions_share_onnx_calls():
    engine = VadEngine(model_path_or_skip("silero-vad-pkg"), window_ms=5.0)
    try:
        audio = padded(clip("0880"), 0.5)
        results = await asyncio.gather(*(vad_events(engine, audio) for _ in range(4)))
        stats = engine.stats()
    finally:
        engine.close()
    assert all([type(e) for e in r] == [SpeechStart, SpeechEnd] for r in results)
    assert stats.mean_batch_size > 2
