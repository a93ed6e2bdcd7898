"""Giving freed heap memory back to the OS: when a trim runs, and that glibc really returns memory."""

from __future__ import annotations

import asyncio
import ctypes
import sys

import pytest

from voice.server.memory import LIBC, HeapTrimmer, limit_malloc_arenas, trim_heap


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trimmer(every_s: float) -> tuple[HeapTrimmer, Clock, list[float]]:
    clock, trims = Clock(), []
    return HeapTrimmer(every_s, trim=lambda: trims.append(clock.now) or True, clock=clock), clock, trims


async def ended(t: HeapTrimmer, calls_left: int) -> bool:
    task = t.call_ended(calls_left)
    if task is not None:
        await task
    return task is not None


async def test_trims_when_the_last_call_ends_and_at_most_every_interval_while_busy():
    t, clock, trims = trimmer(60.0)
    assert await ended(t, 0)             # nobody left: trim now
    clock.now = 10.0
    assert not await ended(t, 3)         # calls still up, last trim 10 s ago
    clock.now = 61.0
    assert await ended(t, 3)             # a minute since the last one
    clock.now = 62.0
    assert await ended(t, 0)             # the last call: always
    assert trims == [0.0, 61.0, 62.0]


async def test_never_trims_when_off_and_never_two_at_once():
    off, _, trims = trimmer(0.0)
    assert not await ended(off, 0) and trims == []

    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_trim() -> bool:
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return True

    t = HeapTrimmer(60.0, trim=slow_trim)
    first = t.call_ended(0)
    await started.wait()
    assert t.call_ended(0) is None       # one trim in flight: the next call's end does not start another
    release.set()
    assert await first


@pytest.mark.skipif(LIBC is None, reason="needs glibc (malloc_trim); this C library has none")
def test_malloc_trim_returns_freed_memory_to_the_os():
    """Fill then free 64 MB of small blocks (below the mmap threshold, so they stay in the heap):
    resident memory falls by most of it only after the trim."""
    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    LIBC.malloc.restype = ctypes.c_void_p
    LIBC.free.argtypes = [ctypes.c_void_p]
    blocks = [LIBC.malloc(64 * 1024 - 64) for _ in range(1024)]
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024 - 64)
    # keep the last block so the heap's top is in use: only a trim of the middle can give the rest back
    for b in blocks[:-1]:
        LIBC.free(b)
    before = rss_mb()
    assert trim_heap()
    after = rss_mb()
    LIBC.free(blocks[-1])
    assert before - after > 32, f"RSS {before:.0f} -> {after:.0f} MB"


@pytest.mark.skipif(not sys.platform.startswith("linux") or LIBC is None, reason="needs glibc (mallopt)")
def test_arena_limit_is_applied_and_zero_leaves_the_default():
    assert limit_malloc_arenas(2)
    assert not limit_malloc_arenas(0)
