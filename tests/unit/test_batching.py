"""AdaptiveBatcher: batching, priority, superseding, error routing, cancellation, adaptive size."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from voice.batching import AdaptiveBatcher, BatcherClosed, LatencyModel, Superseded, busy_batchers

pytestmark = pytest.mark.timeout(20)


class Recorder:
    """process_batch that records each batch; an item "block" holds the worker until released."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []
        self.blocking = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[object]) -> list[object]:
        self.batches.append(list(items))
        if "block" in items:
            self.blocking.set()
            self.release.wait(10)
        return [f"done:{i}" if isinstance(i, str) else i for i in items]

    async def wait_blocking(self) -> None:
        while not self.blocking.is_set():
            await asyncio.sleep(0.001)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def batcher(recorder):
    b = AdaptiveBatcher(recorder, name="test", window_ms=30.0, max_batch=16)
    yield b
    recorder.release.set()
    b.close()


async def start_blocking(batcher: AdaptiveBatcher, recorder: Recorder) -> asyncio.Task:
    task = asyncio.create_task(batcher.submit("block"))
    await recorder.wait_blocking()
    return task


async def test_requests_submitted_together_share_one_batch(batcher, recorder):
    results = await asyncio.gather(*(batcher.submit(f"x{i}") for i in range(5)))
    assert results == [f"done:x{i}" for i in range(5)]
    assert recorder.batches == [[f"x{i}" for i in range(5)]]


async def test_batch_never_exceeds_max_batch(recorder):
    b = AdaptiveBatcher(recorder, name="small", window_ms=30.0, max_batch=2)
    try:
        await asyncio.gather(*(b.submit(f"x{i}") for i in range(5)))
    finally:
        b.close()
    assert [len(batch) for batch in recorder.batches] == [2, 2, 1]


async def test_urgent_requests_go_before_queued_bulk_requests(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    bulk = [asyncio.create_task(batcher.submit(n)) for n in ("a", "b")]
    urgent = asyncio.create_task(batcher.submit("u", urgent=True))
    await asyncio.sleep(0.01)
    recorder.release.set()
    await asyncio.gather(blocker, urgent, *bulk)
    assert recorder.batches[1] == ["u", "a", "b"]


async def test_newer_request_with_same_key_supersedes_the_queued_one(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    older = asyncio.create_task(batcher.submit("old", key="utt-1"))
    await asyncio.sleep(0.01)
    newer = asyncio.create_task(batcher.submit("new", key="utt-1"))
    await asyncio.sleep(0.01)
    recorder.release.set()
    with pytest.raises(Superseded):
        await older
    assert await newer == "done:new"
    await blocker
    assert all("old" not in b for b in recorder.batches)


async def test_superseding_request_keeps_the_older_ones_place_in_the_queue(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    tasks = [asyncio.create_task(batcher.submit("p1", key="k"))]
    await asyncio.sleep(0.005)
    tasks.append(asyncio.create_task(batcher.submit("other")))
    await asyncio.sleep(0.005)
    tasks.append(asyncio.create_task(batcher.submit("p2", key="k")))
    await asyncio.sleep(0.01)
    recorder.release.set()
    await asyncio.gather(blocker, *tasks, return_exceptions=True)
    assert recorder.batches[1] == ["p2", "other"]


async def test_superseding_works_with_numpy_items(recorder):
    gate = threading.Event()

    def slow(items):
        gate.wait(10)
        return [len(x) for x in items]

    b = AdaptiveBatcher(slow, name="np", window_ms=1.0)
    try:
        first = asyncio.create_task(b.submit(np.zeros(10), key="k"))
        await asyncio.sleep(0.02)  # the worker is now stuck on `first`
        older = asyncio.create_task(b.submit(np.zeros(20), key="k"))
        await asyncio.sleep(0.005)
        newer = asyncio.create_task(b.submit(np.zeros(30), key="k"))
        await asyncio.sleep(0.005)
        gate.set()
        assert await first == 10
        with pytest.raises(Superseded):
            await older
        assert await newer == 30
    finally:
        gate.set()
        b.close()


async def test_exception_result_goes_only_to_its_own_item():
    def process(items):
        return [ValueError(f"bad {i}") if i == 2 else i * 10 for i in items]

    b = AdaptiveBatcher(process, name="errs", window_ms=30.0)
    try:
        results = await asyncio.gather(*(b.submit(i) for i in range(4)), return_exceptions=True)
    finally:
        b.close()
    assert results[0] == 0 and results[1] == 10 and results[3] == 30
    assert isinstance(results[2], ValueError)


async def test_exception_from_whole_batch_goes_to_every_item():
    def process(items):
        raise RuntimeError("model crashed")

    b = AdaptiveBatcher(process, name="crash", window_ms=30.0)
    try:
        results = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
    finally:
        b.close()
    assert all(isinstance(r, RuntimeError) and "model crashed" in str(r) for r in results)


async def test_worker_survives_a_failed_batch():
    calls = []

    def process(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("first batch fails")
        return items

    b = AdaptiveBatcher(process, name="recover", window_ms=1.0)
    try:
        with pytest.raises(RuntimeError):
            await b.submit(1)
        assert await b.submit(2) == 2
    finally:
        b.close()


async def test_cancelled_queued_request_is_never_processed(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    doomed = asyncio.create_task(batcher.submit("doomed"))
    await asyncio.sleep(0.01)
    doomed.cancel()
    await asyncio.sleep(0.01)
    recorder.release.set()
    await blocker
    assert await batcher.submit("after") == "done:after"
    assert all("doomed" not in b for b in recorder.batches)


async def test_cancelling_a_request_in_progress_does_not_break_the_worker(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    blocker.cancel()
    recorder.release.set()
    with pytest.raises(asyncio.CancelledError):
        await blocker
    assert await batcher.submit("next") == "done:next"


async def test_submit_after_close_raises(recorder):
    b = AdaptiveBatcher(recorder, name="closed")
    b.close()
    with pytest.raises(BatcherClosed):
        await b.submit("x")


async def test_close_fails_queued_requests(batcher, recorder):
    blocker = await start_blocking(batcher, recorder)
    queued = asyncio.create_task(batcher.submit("queued"))
    await asyncio.sleep(0.01)
    threading.Thread(target=batcher.close).start()
    with pytest.raises(BatcherClosed):
        await queued
    recorder.release.set()
    await blocker


async def test_stats_count_batches_items_and_latency(batcher):
    await asyncio.gather(*(batcher.submit(f"x{i}") for i in range(4)))
    await batcher.submit("y")
    stats = batcher.stats()
    assert (stats.batches, stats.items) == (2, 5)
    assert stats.mean_batch_size == 2.5
    assert 0 <= stats.p50_latency_ms <= stats.p95_latency_ms


def test_latency_model_recovers_fixed_and_per_item_cost():
    model = LatencyModel(alpha=0.2)
    for _ in range(20):
        for size in (1, 4, 8):
            model.observe(size, 5.0 + 10.0 * size)
    fixed, per_item = model.coefficients()
    assert fixed == pytest.approx(5.0, abs=0.5)
    assert per_item == pytest.approx(10.0, abs=0.5)


def test_latency_model_picks_largest_size_within_target():
    model = LatencyModel()
    for size in (1, 2, 8, 1, 2, 8):
        model.observe(size, 5.0 + 10.0 * size)
    assert model.best_size(40.0, lo=1, hi=16) == 3
    assert model.best_size(1000.0, lo=1, hi=16) == 16
    assert model.best_size(1.0, lo=2, hi=16) == 2


def test_latency_model_with_one_size_only_charges_everything_per_item():
    model = LatencyModel()
    model.observe(4, 40.0)
    assert model.coefficients() == (0.0, 10.0)


async def test_batch_size_follows_target_latency():
    def process(items):
        time.sleep(0.002 + 0.004 * len(items))  # 2 ms fixed + 4 ms per item
        return items

    b = AdaptiveBatcher(process, name="adaptive", window_ms=20.0, max_batch=32, target_latency_ms=15.0)
    try:
        for _ in range(4):
            await asyncio.gather(*(b.submit(i) for i in range(32)))
        stats = b.stats()
    finally:
        b.close()
    assert 1 <= stats.next_batch_size <= 4
    assert stats.mean_batch_size < 32


async def test_request_that_waited_behind_a_busy_worker_is_not_held_for_another_window(recorder):
    b = AdaptiveBatcher(recorder, name="late", window_ms=500.0)
    try:
        blocker = asyncio.create_task(b.submit("block"))
        await recorder.wait_blocking()
        waiting = asyncio.create_task(b.submit("waiting"))
        await asyncio.sleep(0.6)  # longer than the window
        released = time.perf_counter()
        recorder.release.set()
        await asyncio.gather(blocker, waiting)
        assert time.perf_counter() - released < 0.25
    finally:
        recorder.release.set()
        b.close()


async def test_batch_size_counts_item_costs_when_given(recorder):
    b = AdaptiveBatcher(recorder, name="costed", window_ms=30.0, max_batch=8, cost=len)
    try:
        await asyncio.gather(*(b.submit("x" * 4) for _ in range(3)), b.submit("y" * 9))
    finally:
        b.close()
    assert [sum(map(len, batch)) for batch in recorder.batches] == [8, 4, 9]  # an oversize item goes alone
    assert b.stats().units == 21


async def test_busy_batchers_counts_running_batches_of_cpu_sharing_batchers_only():
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(items):
        started.set()
        release.wait(5)
        return items

    def tiny(items):
        seen.append(busy_batchers())
        return items

    heavy = AdaptiveBatcher(slow, name="heavy")
    light = AdaptiveBatcher(tiny, name="light", shares_cpu=False)
    try:
        idle = busy_batchers()
        task = asyncio.ensure_future(heavy.submit(1))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        during = busy_batchers()
        await light.submit(2)  # a non-sharing batcher is not counted while it runs
        release.set()
        await task
        after = busy_batchers()
    finally:
        release.set()
        heavy.close()
        light.close()
    assert (idle, during, seen, after) == (0, 1, [1], 0)
