"""Orpheus end to end on CPU: tiny random GGUF (Orpheus vocabulary) -> llama.cpp -> tokens -> SNAC.

The model has random weights; generation is constrained to the audio ids of each frame position,
so the stream is well formed and every step of the real path runs: prompt, sampling, parsing,
windowed batched decoding, cancellation.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("snac")
pytest.importorskip("llama_cpp")

from voice.codecs.snac import SnacDecoder
from voice.tts.base import TtsEngine
from voice.tts.gguf_tiny import write_orpheus_gguf
from voice.tts.orpheus import OrpheusEngine, SamplingSettings
from voice.tts.token_settings import TokenTtsSettings, build_token_tts, token_tts_status

pytestmark = pytest.mark.timeout(300)
FRAMES = 8
SPF = 2048


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_orpheus_gguf(tmp_path_factory.mktemp("orpheus") / "tiny.gguf")


@pytest.fixture(scope="module")
def engine(gguf):
    snac = SnacDecoder(random_weights=True, noise=False)
    e = OrpheusEngine(gguf, snac, max_tokens=7 * FRAMES, sampling=SamplingSettings(seed=3))
    yield e
    e.close()


async def collect(engine, text: str = "Hello there.") -> list[np.ndarray]:
    return [chunk async for chunk in engine.synthesize(text)]


def test_engine_implements_the_tts_interface(engine):
    assert isinstance(engine, TtsEngine)
    assert engine.sample_rate_hz == 24000


async def test_synthesize_streams_float32_mono_chunks_for_every_frame(engine):
    chunks = await collect(engine)
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert sum(len(c) for c in chunks) == FRAMES * SPF
    assert engine.last_parser.frames == FRAMES
    assert engine.last_parser.bad_tokens == 0


async def test_first_chunk_is_the_first_two_frames(engine):
    stream = engine.synthesize("Hi.")
    first = await anext(aiter(stream))
    await stream.aclose()
    assert len(first) == 2 * SPF


async def test_audio_is_in_range_and_not_silent(engine):
    audio = np.concatenate(await collect(engine))
    assert np.abs(audio).max() <= 1.0
    assert audio.std() > 1e-3


async def test_stopping_iteration_stops_generation_at_the_next_token(gguf):
    snac = SnacDecoder(random_weights=True, noise=False)
    e = OrpheusEngine(gguf, snac, max_tokens=7 * 400, sampling=SamplingSettings(seed=1))
    try:
        stream = e.synthesize("A long sentence that we interrupt.")
        await anext(aiter(stream))
        await stream.aclose()
        deadline = time.monotonic() + 5
        while e.lm.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not e.lm.busy
        assert e.lm.last_tokens < 7 * 400
    finally:
        e.close()


async def test_concurrent_sessions_each_get_their_whole_utterance(engine):
    results = await asyncio.gather(collect(engine, "One."), collect(engine, "Two."))
    assert [sum(len(c) for c in chunks) for chunks in results] == [FRAMES * SPF] * 2


async def test_settings_build_a_working_engine(tmp_path):
    settings = TokenTtsSettings(engine="orpheus", gguf_cache_dir=tmp_path, codec_noise=False,
                                max_tokens=7 * 4, seed=0)
    tts = build_token_tts(settings)
    try:
        chunks = await collect(tts)
    finally:
        tts.close()
    assert sum(len(c) for c in chunks) == 4 * SPF
    assert (tmp_path / "orpheus-random-tiny.gguf").is_file()


def test_status_reports_a_missing_gguf_file(tmp_path):
    rows = token_tts_status(TokenTtsSettings(gguf=str(tmp_path / "nope.gguf")))
    assert ("orpheus-lm", "missing") in [(name, state) for name, state, _, _ in rows]
