"""The 20 ms clock that drives a call's media: one RTP packet out and one frame in per slot.

Slot k is due at start + k * frame_ms on the monotonic clock, computed from the start each
time, so sleeping late never accumulates into drift. When the loop was held up for more than a
slot, the missed slots are **skipped**, not sent in a burst: a phone's jitter buffer handles a
gap far better than a flood of packets, and the caller is told how many slots were skipped so
the RTP timestamp still advances with real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RtpPacer:
    """Calls `tick(skipped_slots)` once per slot until stopped. Owns no audio; use from one loop."""

    def __init__(self, tick: Callable[[int], None], *, frame_ms: int = 20,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self._tick = tick
        self.frame_s = frame_ms / 1000
        self._clock, self._sleep = clock, sleep
        self._task: asyncio.Task[None] | None = None
        self.start_s: float | None = None
        self.slots = 0          # slots ticked or skipped so far
        self.skipped = 0        # slots skipped because the loop was late
        self.max_late_s = 0.0   # worst lateness of a tick that was sent

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def due_s(self, slot: int) -> float:
        assert self.start_s is not None, "pacer not started"
        return self.start_s + slot * self.frame_s

    async def _run(self) -> None:
        self.start_s = self._clock()
        while True:
            due = self.due_s(self.slots)
            delay = due - self._clock()
            if delay > 0:
                await self._sleep(delay)
            late = self._clock() - due
            missed = int(late // self.frame_s) if late > 0 else 0
            if missed:
                self.skipped += missed
                self.slots += missed
                late -= missed * self.frame_s
            self.max_late_s = max(self.max_late_s, late)
            self.slots += 1
            self._tick(missed)
