"""Admission from measured capacity: the learned session limit, refusals, and the queue-delay measure."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from voice.batching import AdaptiveBatcher, QueueWaits
from voice.server.admission import AdmissionControl, AdmissionSettings, engine_queue_delays_ms

SETTINGS = AdmissionSettings(max_queue_delay_ms=1000, calm_queue_delay_ms=300, grow_after_s=10, cut_hold_s=5)
CALM = {"asr": 50.0, "llm": 0.0}
BEHIND = {"asr": 50.0, "llm": 2500.0}


def control(max_sessions: int = 16, **changes) -> AdmissionControl:
    return AdmissionControl(SETTINGS.model_copy(update=changes), max_sessions)


def test_nothing_measured_admits_up_to_max_sessions():
    ctl = control(max_sessions=3)
    assert ctl.check(2) is None
    refusal = ctl.check(3)
    assert refusal is not None and refusal.reason == "max_sessions"


def test_an_engine_behind_real_time_cuts_the_limit_below_the_sessions_running():
    ctl = control()
    ctl.observe(0.0, sessions=5, delays_ms=BEHIND)
    assert ctl.limit == 4 and ctl.overloaded
    refusal = ctl.check(5)
    assert refusal is not None and refusal.reason == "capacity"
    assert "retry_after_ms=10000" in refusal.message and "llm 2500 ms" in refusal.message


def test_the_cut_goes_below_the_load_that_made_the_measures():
    ctl = control(turn_window_s=60)
    ctl.observe(0.0, sessions=5, delays_ms=BEHIND)
    assert ctl.limit == 4
    ctl.observe(30.0, sessions=5, delays_ms=BEHIND)   # the same 5 are still on: nothing new learnt
    ctl.observe(31.0, sessions=4, delays_ms=BEHIND)   # ...and their load is still in the window
    assert ctl.limit == 4
    for t in range(32, 92):                           # 4 sessions alone, for a whole window: too many
        ctl.observe(float(t), sessions=4, delays_ms=BEHIND)
    assert ctl.limit == 3


def test_cuts_wait_for_the_hold_time():
    ctl = control(cut_hold_s=5)
    ctl.observe(0.0, sessions=5, delays_ms=BEHIND)
    ctl.observe(0.5, sessions=4, delays_ms=BEHIND)   # the cut restarted the window: 4 is the load now
    ctl.observe(1.0, sessions=4, delays_ms=BEHIND)
    assert ctl.limit == 4
    ctl.observe(5.0, sessions=4, delays_ms=BEHIND)
    assert ctl.limit == 3


def test_calm_at_the_limit_grows_it_by_one_per_period():
    ctl = control()
    ctl.observe(0.0, sessions=4, delays_ms=BEHIND)
    assert ctl.limit == 3
    for t in range(1, 10):
        ctl.observe(10.0 + t, sessions=3, delays_ms=CALM)
    assert ctl.limit == 3
    ctl.observe(21.0, sessions=3, delays_ms=CALM)
    assert ctl.limit == 4
    ctl.observe(22.0, sessions=4, delays_ms=CALM)  # a new period starts at the growth
    assert ctl.limit == 4


def test_calm_below_the_limit_proves_nothing_and_does_not_grow():
    ctl = control()
    ctl.observe(0.0, sessions=4, delays_ms=BEHIND)
    for t in range(60):
        ctl.observe(10.0 + t, sessions=1, delays_ms=CALM)
    assert ctl.limit == 3


def test_slow_turns_cut_the_limit_even_when_no_engine_queues():
    ctl = control()
    ctl.observe(0.0, sessions=4, delays_ms=CALM, turn_latencies_ms=[1200.0] * 10 + [4500.0] * 2)
    assert ctl.limit == 3 and ctl.overloaded and ctl.turn_p95_ms > 3000
    assert "turn p95" in ctl.check(3).message


def test_a_few_slow_turns_are_not_enough_evidence():
    ctl = control()
    ctl.observe(0.0, sessions=4, delays_ms=CALM, turn_latencies_ms=[9000.0] * 4)
    assert ctl.limit == 16 and not ctl.overloaded and ctl.turn_p95_ms is None


def test_turns_from_before_the_last_change_do_not_count():
    ctl = control(turn_window_s=60)
    assert ctl.turn_window_s(now=100.0) == 60
    ctl.observe(100.0, sessions=4, delays_ms=BEHIND)
    assert ctl.turn_window_s(now=110.0) == pytest.approx(10.0)


def test_the_limit_grows_only_while_recent_turns_are_fast():
    ctl = control()
    ctl.observe(0.0, sessions=4, delays_ms=BEHIND)
    for t in range(30):  # no queue, but turns between calm (2 s) and overloaded (3 s): hold
        ctl.observe(10.0 + t, sessions=3, delays_ms=CALM, turn_latencies_ms=[2500.0] * 6)
    assert ctl.limit == 3 and not ctl.overloaded
    for t in range(11):
        ctl.observe(40.0 + t, sessions=3, delays_ms=CALM, turn_latencies_ms=[900.0] * 6)
    assert ctl.limit == 4


def test_a_busy_box_lets_new_sessions_in_one_per_settle_time():
    ctl = control(settle_s=10)
    warm = {"asr": 600.0}  # over the calm bound, under the overload bound
    ctl.observe(0.0, sessions=2, delays_ms=warm)
    assert not ctl.calm and not ctl.overloaded
    assert ctl.check(2, now=1.0) is None
    refusal = ctl.check(3, now=5.0)
    assert refusal is not None and refusal.reason == "settling" and "asr 600 ms" in refusal.message
    assert ctl.check(3, now=11.5) is None


def test_a_calm_box_admits_a_burst():
    ctl = control(settle_s=10)
    ctl.observe(0.0, sessions=0, delays_ms=CALM)
    assert all(ctl.check(n, now=1.0 + n * 0.01) is None for n in range(6))


def test_never_refuses_below_min_sessions():
    ctl = control(min_sessions=2)
    ctl.observe(0.0, sessions=1, delays_ms=BEHIND)
    assert ctl.check(1) is None
    assert ctl.check(2) is not None


def test_disabled_admission_only_enforces_max_sessions_but_still_measures():
    ctl = control(max_sessions=8, enabled=False)
    ctl.observe(0.0, sessions=5, delays_ms=BEHIND)
    assert ctl.check(6) is None
    assert ctl.state()["session_limit"] == 4 and ctl.state()["enabled"] is False
    assert ctl.check(8).reason == "max_sessions"


def test_queue_waits_report_the_longest_recent_wait_or_the_oldest_still_waiting():
    waits = QueueWaits(window_s=5.0)
    waits.started(queued_at=0.0, now=0.4)
    waits.started(queued_at=1.0, now=1.1)
    assert waits.delay_ms(now=2.0, oldest_queued_at=None) == pytest.approx(400.0)
    assert waits.delay_ms(now=2.0, oldest_queued_at=0.5) == pytest.approx(1500.0)
    assert waits.delay_ms(now=5.5, oldest_queued_at=None) == pytest.approx(100.0)  # the 400 ms one aged out
    assert waits.delay_ms(now=20.0, oldest_queued_at=None) == 0.0


async def test_a_busy_batcher_reports_its_queue_delay():
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    batcher: AdaptiveBatcher[int, int] = AdaptiveBatcher(slow, name="t", window_ms=0, max_batch=1)
    try:
        first = asyncio.ensure_future(batcher.submit(1, urgent=True))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(2, urgent=True))  # waits behind the first
        await asyncio.sleep(0.3)
        assert batcher.queue_delay_ms() >= 250  # the second is still queued
        release.set()
        assert await first == 1 and await second == 2
        assert batcher.stats().queue_delay_ms >= 250  # it started after waiting that long
    finally:
        release.set()
        batcher.close()


async def test_an_idle_batcher_has_no_queue_delay():
    batcher: AdaptiveBatcher[int, int] = AdaptiveBatcher(lambda items: items, name="t", window_ms=0)
    try:
        assert await batcher.submit(1) == 1
        assert batcher.queue_delay_ms() < 50
    finally:
        batcher.close()


def test_engine_delays_are_read_from_every_engine_that_measures_one():
    @dataclass
    class Stats:
        queue_delay_ms: float

    class Batched:
        def stats(self) -> Stats:
            return Stats(120.0)

    class Queued:
        def queue_delay_ms(self) -> float:
            return 900.0

    @dataclass
    class Engines:
        asr: object
        llm: object
        tts: object

    assert engine_queue_delays_ms(Engines(Batched(), Queued(), object())) == {"asr": 120.0, "llm": 900.0}


def test_the_sampler_keeps_running_when_an_engine_stat_fails():
    ctl = control(sample_interval_ms=10)
    calls = []

    def delays() -> dict[str, float]:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("broken engine")
        return BEHIND

    async def run() -> None:
        task = asyncio.ensure_future(ctl.run(lambda: 5, delays))
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(run())
    assert len(calls) >= 2 and ctl.limit == 4


def test_the_sampler_reads_recent_turn_latencies_from_the_metrics_window():
    from voice import metrics

    for _ in range(6):
        metrics.RECENT_VOICE_TO_VOICE_MS.add(5000.0)  # what turn_metrics.export() records per turn
    ctl = control(sample_interval_ms=10)

    async def run() -> None:
        task = asyncio.ensure_future(ctl.run(lambda: 3, lambda: CALM))
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(run())
    assert ctl.limit == 2  # cut by the slow turns alone (the engines were calm)
    assert ctl.turn_p95_ms is None  # ...which, older than the cut, no longer count
