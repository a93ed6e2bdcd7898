"""Streaming windows, the CodecEngine's batching and CodecStream ordering, with a fake codec."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voice.codecs.codec_base import FrameWindower, Window, WindowPlan, choose_device, choose_dtype
from voice.tts.codec_engine import CodecEngine, CodecStream

pytestmark = pytest.mark.timeout(20)

ORPHEUS = WindowPlan(left_frames=1, hop_frames=1, right_frames=2)
SPF = 4  # samples per frame of the fake codec


class FakeCodec:
    """Frame i decodes to SPF samples equal to its first code; records the shape of every call."""

    name = "fake"
    sample_rate_hz = 1000
    samples_per_frame = SPF
    codes_per_frame = 2
    codebook_size = 1000
    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail_length: int | None = None

    def decode(self, frames: np.ndarray) -> np.ndarray:
        self.hold.wait(10)
        self.calls.append(frames.shape)
        if frames.shape[1] == self.fail_length:
            raise ValueError("bad group")
        return np.repeat(frames[:, :, 0].astype(np.float32), SPF, axis=1)


def frame(i: int) -> np.ndarray:
    return np.array([i, 0])


def windower_with(n: int, plan: WindowPlan = ORPHEUS) -> FrameWindower:
    w = FrameWindower(plan, 2)
    for i in range(n):
        w.push(frame(i))
    return w


def window_of(n: int, *, first: bool) -> Window:
    return Window(np.stack([frame(i) for i in range(n)]), 0, 0, n, first)


def kept(window) -> list[int]:
    return window.frames[window.keep_from:window.keep_to, 0].tolist()


@pytest.fixture
def codec():
    return FakeCodec()


@pytest.fixture
def engine(codec):
    e = CodecEngine(codec, min_batch_frames=4, max_batch_frames=64, window_ms=20.0, warmup_frames=0, stack=True,
                    target_latency_ms=None)
    yield e
    codec.hold.set()
    e.close()


# -- windows -------------------------------------------------------------------------------------

def test_first_window_waits_for_a_full_window_of_frames():
    assert windower_with(3).take() is None
    assert windower_with(4).take() is not None


def test_first_window_keeps_left_and_hop_frames():
    w = windower_with(4).take()
    assert (w.start, len(w.frames), kept(w), w.first) == (0, 4, [0, 1], True)


def test_windows_taken_on_time_are_window_frames_long_and_keep_one_hop():
    w = FrameWindower(ORPHEUS, 2)
    windows = []
    for i in range(8):
        w.push(frame(i))
        windows += [x for x in [w.take()] if x is not None]
    assert [len(x.frames) for x in windows] == [4] * 5
    assert [kept(x) for x in windows] == [[0, 1], [2], [3], [4], [5]]
    assert [x.keep_from for x in windows[1:]] == [1] * 4


def test_a_late_take_covers_several_hops_in_one_window():
    w = windower_with(4)
    w.take()
    for i in range(4, 9):
        w.push(frame(i))
    late = w.take()
    assert kept(late) == [2, 3, 4, 5, 6]
    assert late.frames[:, 0].tolist() == list(range(1, 9))  # one left, two right context frames


def test_max_new_frames_caps_a_late_window():
    w = windower_with(4)
    w.take()
    for i in range(4, 9):
        w.push(frame(i))
    assert kept(w.take(max_new_frames=2)) == [2, 3]
    assert kept(w.take(max_new_frames=2)) == [4, 5]


def test_one_hop_cap_still_gives_first_audio_its_left_context():
    assert kept(windower_with(4).take(max_new_frames=1)) == [0, 1]


def test_finish_releases_the_held_back_tail():
    w = windower_with(6)
    while w.take():
        pass
    w.finish()
    tail = w.take()
    assert kept(tail) == [4, 5]
    assert len(tail.frames) == 4
    assert w.done


def test_short_utterance_decodes_in_one_window():
    w = windower_with(2)
    assert w.take() is None
    w.finish()
    only = w.take()
    assert kept(only) == [0, 1]
    assert only.first


def test_wider_hop_rounds_windows_to_whole_hops():
    w = windower_with(16, WindowPlan(4, 8, 4))
    first = w.take()
    assert kept(first) == list(range(8))
    assert w.take() is None  # 4 decodable frames: less than a hop


# -- engine --------------------------------------------------------------------------------------

async def run_stream(engine: CodecEngine, n_frames: int, *, coalesce: bool = True, plan=ORPHEUS) -> np.ndarray:
    stream = CodecStream(engine, plan, coalesce=coalesce)
    for i in range(n_frames):
        stream.push(frame(i))
        await asyncio.sleep(0)
    stream.finish()
    return np.concatenate([c async for c in stream.chunks()])


@pytest.mark.parametrize("coalesce", [True, False])
async def test_stream_audio_is_every_frame_once_in_order(engine, coalesce):
    audio = await run_stream(engine, 11, coalesce=coalesce)
    assert audio.tolist() == np.repeat(np.arange(11.0), SPF).tolist()


async def test_windows_of_many_streams_share_one_decoder_call(engine, codec):
    await asyncio.gather(*(run_stream(engine, 4) for _ in range(5)))
    assert codec.calls[0] == (5, 4, 2)


async def test_on_cpu_each_window_gets_its_own_call_by_default(codec):
    e = CodecEngine(codec, window_ms=20.0, warmup_frames=0)
    try:
        await asyncio.gather(*(run_stream(e, 4) for _ in range(3)))
    finally:
        e.close()
    assert codec.calls[:3] == [(1, 4, 2)] * 3


async def test_a_busy_stream_coalesces_waiting_frames_into_one_wider_window(engine, codec):
    codec.hold.clear()
    stream = CodecStream(engine, ORPHEUS)
    for i in range(10):
        stream.push(frame(i))  # the first window is in flight, blocked; 6 more frames arrive
    codec.hold.set()
    stream.finish()
    audio = np.concatenate([c async for c in stream.chunks()])
    assert codec.calls == [(1, 4, 2), (1, 9, 2)]  # first audio, then frames 1..9 in one window
    assert audio.tolist() == np.repeat(np.arange(10.0), SPF).tolist()


async def test_batch_size_is_counted_in_frames(codec):
    e = CodecEngine(codec, min_batch_frames=4, max_batch_frames=8, window_ms=20.0, warmup_frames=0, stack=True)
    try:
        await asyncio.gather(*(run_stream(e, 4) for _ in range(5)))
    finally:
        e.close()
    assert all(calls[0] * calls[1] <= 8 for calls in codec.calls)


async def test_windows_of_different_lengths_are_decoded_in_separate_calls(engine, codec):
    await asyncio.gather(run_stream(engine, 4), run_stream(engine, 2))
    assert sorted(codec.calls[:2]) == [(1, 2, 2), (1, 4, 2)]  # one batch, two calls


async def test_first_audio_is_served_before_queued_bulk_windows(codec):
    e = CodecEngine(codec, min_batch_frames=4, max_batch_frames=5, window_ms=1.0, warmup_frames=0, stack=True)
    try:
        codec.hold.clear()
        blocker = asyncio.ensure_future(e.decode(window_of(3, first=False)))
        await asyncio.sleep(0.05)  # the worker has taken the blocker and waits in decode
        bulk = asyncio.ensure_future(e.decode(window_of(5, first=False)))
        first = asyncio.ensure_future(e.decode(window_of(4, first=True)))
        await asyncio.sleep(0.05)
        codec.hold.set()
        await asyncio.gather(blocker, bulk, first)
    finally:
        codec.hold.set()
        e.close()
    assert codec.calls == [(1, 3, 2), (1, 4, 2), (1, 5, 2)]


async def test_a_failing_window_group_fails_only_its_own_stream(engine, codec):
    codec.fail_length = 2
    good, bad = await asyncio.gather(run_stream(engine, 4), run_stream(engine, 2), return_exceptions=True)
    assert isinstance(bad, ValueError)
    assert len(good) == 4 * SPF


async def test_cancelled_stream_ends_without_the_abandoned_audio(engine, codec):
    codec.hold.clear()
    stream = CodecStream(engine, ORPHEUS)
    for i in range(4):
        stream.push(frame(i))
    stream.cancel()
    codec.hold.set()
    assert [c async for c in stream.chunks()] == []


# -- device choice (pure, so tested on any box) --------------------------------------------------

def test_auto_device_takes_cuda_when_present():
    assert choose_device("auto", cuda_available=True) == "cuda"
    assert choose_device("auto", cuda_available=False) == "cpu"


def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="cuda"):
        choose_device("cuda", cuda_available=False)


def test_auto_dtype_is_fp16_on_cuda_and_fp32_on_cpu():
    assert choose_dtype("cuda") == "float16"
    assert choose_dtype("cpu") == "float32"


def test_half_precision_on_cpu_is_refused():
    with pytest.raises(ValueError):
        choose_dtype("cpu", "float16")
