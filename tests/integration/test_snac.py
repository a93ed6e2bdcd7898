"""SNAC 24 kHz with random weights: shapes, batched == one by one, local loading, streaming joins.

Random weights give noise, not speech, so quality is judged against the codec itself: a streamed
decode must reproduce the one-shot decode of the same codes (noise blocks off, so both are
deterministic), and its window joins must not jump more than the signal does on its own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("snac")

from voice.codecs.codec_base import FrameWindower, WindowPlan
from voice.codecs.snac import SNAC_24KHZ_CONFIG, SnacDecoder

pytestmark = pytest.mark.timeout(300)
ORPHEUS = WindowPlan(left_frames=1, hop_frames=1, right_frames=2)
SPF = 2048


@pytest.fixture(scope="module")
def snac() -> SnacDecoder:
    return SnacDecoder(random_weights=True, noise=False, n_threads=1)


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 4096, (10, 7))


def streamed(snac: SnacDecoder, codes: np.ndarray, max_new_frames: int | None) -> list[np.ndarray]:
    """Decode `codes` as a stream would: frame by frame, each window as soon as it is ready."""
    windower, parts = FrameWindower(ORPHEUS, 7), []

    def drain() -> None:
        while (w := windower.take(max_new_frames)) is not None:
            parts.append(snac.decode(w.frames[None])[0, w.keep_from * SPF:w.keep_to * SPF])

    for frame in codes:
        windower.push(frame)
        drain()
    windower.finish()
    drain()
    return parts


def test_decode_gives_2048_float32_samples_per_frame_in_range(snac):
    audio = snac.decode(np.zeros((2, 4, 7), dtype=np.int64))
    assert audio.shape == (2, 4 * SPF)
    assert audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0
    assert snac.sample_rate_hz == 24000


def test_batched_decode_equals_one_by_one(snac, codes):
    windows = np.stack([codes[0:4], codes[3:7], codes[6:10]])
    batched = snac.decode(windows)
    single = np.concatenate([snac.decode(w[None]) for w in windows])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_out_of_range_codes_are_refused(snac):
    with pytest.raises(ValueError, match="codes must be"):
        snac.decode(np.full((1, 4, 7), 4096))


def test_streamed_decode_matches_one_shot_over_the_kept_regions(snac, codes):
    one_shot = snac.decode(codes[None])[0]
    stream = np.concatenate(streamed(snac, codes, max_new_frames=1))
    assert len(stream) == len(one_shot)
    rel_rms = np.sqrt(np.mean((stream - one_shot) ** 2)) / one_shot.std()
    assert rel_rms < 0.05  # measured 0.008: one frame of left context is nearly the whole story


def test_window_joins_jump_no_more_than_the_signal_itself(snac, codes):
    one_shot = snac.decode(codes[None])[0]
    parts = streamed(snac, codes, max_new_frames=1)
    stream = np.concatenate(parts)
    joins = np.cumsum([len(p) for p in parts])[:-1]
    jump_at_join = np.abs(stream[joins] - stream[joins - 1])
    own_step = np.abs(one_shot[joins] - one_shot[joins - 1])
    typical_step = np.percentile(np.abs(np.diff(one_shot)), 99)
    assert np.all(jump_at_join <= np.maximum(1.5 * own_step, typical_step))


def test_coalesced_windows_match_one_shot_too(snac, codes):
    one_shot = snac.decode(codes[None])[0]
    windower = FrameWindower(ORPHEUS, 7)
    for frame in codes:
        windower.push(frame)
    windower.finish()
    first, rest = windower.take(1), windower.take()  # first audio, then 8 frames in one window
    assert (first.kept_frames, rest.kept_frames) == (2, 8)
    stream = np.concatenate([snac.decode(w.frames[None])[0, w.keep_from * SPF:w.keep_to * SPF]
                             for w in (first, rest)])
    assert np.sqrt(np.mean((stream - one_shot) ** 2)) / one_shot.std() < 0.05


def test_weights_load_from_a_local_folder_in_the_published_layout(tmp_path, snac, codes):
    import torch
    from snac import SNAC

    torch.manual_seed(0)  # what random_weights=True, seed=0 builds
    model = SNAC(**SNAC_24KHZ_CONFIG)
    (tmp_path / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = SnacDecoder(tmp_path, noise=False)
    np.testing.assert_allclose(loaded.decode(codes[None, :4]), snac.decode(codes[None, :4]), atol=1e-5)


def test_noise_blocks_make_the_published_config_non_deterministic(codes):
    noisy = SnacDecoder(random_weights=True, noise=True)
    assert not np.allclose(noisy.decode(codes[None, :4]), noisy.decode(codes[None, :4]))
