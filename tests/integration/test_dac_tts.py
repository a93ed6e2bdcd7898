"""OuteTTS-style path on CPU: tiny random GGUF (OuteTTS 1.0 vocabulary) -> c1/c2 tokens -> DAC.

The DAC is the real 24 kHz / 2 x 1024 / 75 Hz framing with a narrow decoder (TINY_DAC): the
full-size DAC is not real time on 2 shared cores (notes/install.md §3) and is a GPU codec.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("llama_cpp")

from voice.codecs.codec_base import FrameWindower
from voice.codecs.dac import TINY_DAC, DacDecoder
from voice.tts.base import TtsEngine
from voice.tts.gguf_tiny import write_outetts_gguf
from voice.tts.orpheus import SamplingSettings
from voice.tts.outetts import OUTETTS_WINDOW, OuteFrameParser, OuteTokenLayout, OuteTtsEngine
from voice.tts.token_settings import TokenTtsSettings, build_token_tts

pytestmark = pytest.mark.timeout(300)
FRAMES = 40
HOP = 320
LAYOUT = OuteTokenLayout(c1_0=1000, c2_0=3000, audio_end=9, im_end=8)


@pytest.fixture(scope="module")
def dac() -> DacDecoder:
    return DacDecoder(random_weights=True, config=TINY_DAC)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, dac):
    gguf = write_outetts_gguf(tmp_path_factory.mktemp("outetts") / "tiny.gguf")
    e = OuteTtsEngine(gguf, dac, max_tokens=2 * FRAMES, sampling=SamplingSettings(seed=2, temperature=0.4))
    yield e
    e.close()


def parse(tokens: list[int]) -> tuple[OuteFrameParser, list[list[int]]]:
    parser = OuteFrameParser(LAYOUT)
    return parser, [f.tolist() for t in tokens if (f := parser.push(t)) is not None]


def test_code_pairs_become_frames_and_other_tokens_are_skipped():
    parser, frames = parse([1005, 3007, 42, 1001, 3002])
    assert frames == [[5, 7], [1, 2]]
    assert (parser.other_tokens, parser.bad_tokens) == (1, 0)


def test_c2_without_its_c1_is_a_bad_token():
    parser, frames = parse([3007, 1005, 3006])
    assert frames == [[5, 6]]
    assert parser.bad_tokens == 1


def test_spare_code_1024_is_a_bad_token():
    parser, frames = parse([1000 + 1024, 3000 + 1024])
    assert frames == []
    assert parser.bad_tokens == 2


def test_dac_decodes_320_samples_per_frame_at_24khz(dac):
    audio = dac.decode(np.zeros((3, 16, 2), dtype=np.int64))
    assert audio.shape == (3, 16 * HOP)
    assert dac.sample_rate_hz == 24000


def test_batched_dac_decode_equals_one_by_one(dac):
    codes = np.random.default_rng(1).integers(0, 1024, (3, 16, 2))
    single = np.concatenate([dac.decode(c[None]) for c in codes])
    np.testing.assert_allclose(dac.decode(codes), single, atol=1e-5)


def test_streamed_dac_matches_one_shot(dac):
    codes = np.random.default_rng(2).integers(0, 1024, (40, 2))
    one_shot = dac.decode(codes[None])[0]
    windower, parts = FrameWindower(OUTETTS_WINDOW, 2), []
    for i, frame in enumerate(codes):
        windower.push(frame)
        if i == len(codes) - 1:
            windower.finish()
        while (w := windower.take(OUTETTS_WINDOW.hop_frames)) is not None:
            parts.append(dac.decode(w.frames[None])[0, w.keep_from * HOP:w.keep_to * HOP])
    stream = np.concatenate(parts)
    assert len(stream) == len(one_shot)
    assert np.sqrt(np.mean((stream - one_shot) ** 2)) / one_shot.std() < 0.05


def test_engine_implements_the_tts_interface(engine):
    assert isinstance(engine, TtsEngine)
    assert engine.sample_rate_hz == 24000


async def test_synthesize_streams_every_generated_frame(engine):
    chunks = [c async for c in engine.synthesize("Hello there.")]
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert sum(len(c) for c in chunks) == FRAMES * HOP
    assert engine.last_parser.frames == FRAMES
    assert engine.last_parser.bad_tokens == 0


async def test_settings_build_a_working_outetts_engine(tmp_path):
    tts = build_token_tts(TokenTtsSettings(engine="outetts", gguf_cache_dir=tmp_path, codec_tiny=True,
                                           max_tokens=2 * 20, seed=0))
    try:
        chunks = [c async for c in tts.synthesize("Hi.")]
    finally:
        tts.close()
    assert sum(len(c) for c in chunks) == 20 * HOP
