"""Named one-shot timers that fire as events on a queue, so a timer's work is done by the queue's one
consumer (the turn controller), in order with everything else, never in a callback.

Re-arming a name replaces its timer; a timer that fires after it was disarmed or re-armed is
recognised as stale by its token and ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from voice.pipeline.events import TimerFired


class Timers:
    """See the module docstring. Use from the event loop."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self._queue = queue
        self._armed: dict[str, tuple[int, asyncio.TimerHandle, Any]] = {}
        self._count = 0

    def arm(self, name: str, delay_s: float, data: Any = None) -> None:
        """`name` fires in `delay_s` (a TimerFired on the queue) unless disarmed or re-armed first."""
        self.disarm(name)
        self._count += 1
        handle = asyncio.get_running_loop().call_later(delay_s, self._queue.put_nowait, TimerFired(name, self._count))
        self._armed[name] = (self._count, handle, data)

    def disarm(self, name: str) -> None:
        armed = self._armed.pop(name, None)
        if armed is not None:
            armed[1].cancel()

    def take(self, event: TimerFired) -> tuple[bool, Any]:
        """(True, its data) when `event` is the live firing of its timer, which is then spent."""
        armed = self._armed.get(event.name)
        if armed is None or armed[0] != event.token:
            return False, None
        del self._armed[event.name]
        return True, armed[2]

    def armed(self, name: str) -> bool:
        return name in self._armed

    def cancel_all(self) -> None:
        for _, handle, _ in self._armed.values():
            handle.cancel()
        self._armed.clear()
