"""Hand freed heap memory back to the operating system (glibc only; a no-op elsewhere).

Why: measured in docs/operations.md (Memory), most of a server's RSS growth under load is memory
the process already freed: every thread that allocates gets its own glibc malloc arena (up to 8 per
core), and each arena keeps the high-water mark of its busiest moment. Nothing leaks, but RSS only
goes up, and a box that must budget memory per process cannot tell a peak from a leak. Two cheap
remedies, both settable under `[server]`:

- `malloc_arena_max`: fewer arenas (mallopt M_ARENA_MAX, like the MALLOC_ARENA_MAX environment
  variable) so fewer high-water marks are kept. It must be set before the process's threads make
  their arenas, so the server sets it before loading models.
- `trim_memory_every_s`: `malloc_trim(0)` in a worker thread when the last call hangs up, and at
  most this often while calls come and go, so what the calls freed goes back to the OS.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim); None on musl, macOS, Windows."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


LIBC = _glibc()


def limit_malloc_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas for this process (0: glibc's default). True when applied."""
    if arenas <= 0 or LIBC is None:
        return False
    applied = bool(LIBC.mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas limited", extra={"arenas": arenas, "applied": applied})
    return applied


def trim_heap() -> bool:
    """Return the free memory at the top and in the middle of every arena to the OS. Blocking
    (milliseconds to tens of them on a 2 GB heap): call it from a worker thread."""
    return LIBC is not None and bool(LIBC.malloc_trim(0))


class HeapTrimmer:
    """Trims the heap when a call ends: always when none is left, else at most every `every_s`.

    The trim runs in a worker thread (never on the event loop) and never two at once."""

    def __init__(self, every_s: float, trim: Callable[[], bool] = trim_heap,
                 clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self._trim = trim
        self._clock = clock
        self._last = clock()
        self._running: asyncio.Task | None = None

    def call_ended(self, calls_left: int) -> asyncio.Task | None:
        """Start a trim if one is due; returns its task (tests await it), else None."""
        if self.every_s <= 0 or (self._running is not None and not self._running.done()):
            return None
        now = self._clock()
        if calls_left > 0 and now - self._last < self.every_s:
            return None
        self._last = now
        self._running = asyncio.create_task(asyncio.to_thread(self._trim), name="heap-trim")
        return self._running
