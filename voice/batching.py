"""The adaptive batcher shared by the engines: one worker thread per model, fed by every session.

Sessions `await submit(item)` on the event loop; the worker thread gathers requests for a short
window, runs `process_batch` on them (model inference, off the loop), and hands each result back to
the awaiting loop with `call_soon_threadsafe`.

- Urgent requests (final transcripts, first audio) are taken before bulk ones.
- A request with a `key` supersedes a still-queued older request with the same key: the older
  awaiter gets `Superseded`. Partial transcripts use this so a busy CPU never decodes stale audio.
- The next batch size is chosen from a running fit of batch latency = fixed + per_item * size, so
  that the predicted latency stays within `target_latency_ms` (when set).
- Sizes count items, or the units that `cost(item)` gives when set (codec decoding counts frames:
  a 16-frame request costs four times a 4-frame one); `min_batch`/`max_batch` are then in units.
- `queue_delay_ms()` says how far behind the worker is: the longest recent wait from submit to
  the start of a request's batch (or the age of the oldest request still queued). The server's
  admission control refuses new sessions while an engine is behind (voice/server/admission.py).
- `busy_batchers()` counts the batchers running a batch right now (those made with
  `shares_cpu=True`: ASR, TTS, codecs, not the tiny VAD), so the llama.cpp engine can use more
  threads only while it has the CPU to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

LATENCY_HISTORY = 1000  # batches kept for the p50/p95 statistics
QUEUE_DELAY_WINDOW_S = 5.0  # queue_delay_ms() looks back this far

_busy_lock = threading.Lock()
_busy = 0


def busy_batchers() -> int:
    """Batchers (shares_cpu=True) running a batch right now, process-wide."""
    return _busy


def _mark_busy(delta: int) -> None:
    global _busy
    with _busy_lock:
        _busy += delta


class Superseded(Exception):
    """A newer request with the same key replaced this one before it was processed."""


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request was processed."""


class QueueWaits:
    """Recent queue waits of one engine, for the admission control: how long requests waited from
    submit to the start of their work. Not thread-safe: the owner calls it under its own lock."""

    def __init__(self, window_s: float = QUEUE_DELAY_WINDOW_S, keep: int = 256) -> None:
        self.window_s = window_s
        self._recent: deque[tuple[float, float]] = deque(maxlen=keep)  # (started at, waited ms)

    def started(self, queued_at: float, now: float) -> None:
        """A request queued at `queued_at` (time.monotonic(), s) starts its work `now`."""
        self._recent.append((now, (now - queued_at) * 1000.0))

    def seen(self, now: float) -> bool:
        """Whether a request started in the last `window_s`."""
        return bool(self._recent) and self._recent[-1][0] >= now - self.window_s

    def delay_ms(self, now: float, oldest_queued_at: float | None) -> float:
        """The longest wait of a request started in the last `window_s`, or the age of the oldest
        request still queued if that is longer (a stuck worker starts nothing, yet is behind)."""
        recent = max((ms for at, ms in self._recent if at >= now - self.window_s), default=0.0)
        waiting = (now - oldest_queued_at) * 1000.0 if oldest_queued_at is not None else 0.0
        return max(recent, waiting)


@dataclass(frozen=True)
class BatcherStats:
    """Counters since start; latencies are wall time of `process_batch` calls, in ms."""

    name: str
    batches: int
    items: int
    superseded: int
    mean_batch_size: float
    p50_latency_ms: float
    p95_latency_ms: float
    fixed_ms: float
    per_item_ms: float
    next_batch_size: int
    units: int = 0              # sum of cost(item) over all items (== items without `cost`)
    queue_delay_ms: float = 0.0  # queue_delay_ms() when the stats were taken


class LatencyModel:
    """Running fit of latency_ms ≈ fixed_ms + per_item_ms * size, with exponential forgetting.

    Keeps EMAs of size, latency, size² and size·latency (a weighted least-squares line). While all
    batches so far had the same size the slope is unknown, so all cost is put on the items: that
    predicts high latency for large batches, the safe side.
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self._n = self._y = self._nn = self._ny = 0.0
        self.observations = 0

    def observe(self, size: int, latency_ms: float) -> None:
        a = 1.0 if self.observations == 0 else self.alpha
        self._n += a * (size - self._n)
        self._y += a * (latency_ms - self._y)
        self._nn += a * (size * size - self._nn)
        self._ny += a * (size * latency_ms - self._ny)
        self.observations += 1

    def coefficients(self) -> tuple[float, float]:
        """(fixed_ms, per_item_ms); (0, 0) before any observation."""
        if self.observations == 0:
            return 0.0, 0.0
        var = self._nn - self._n * self._n
        if var > 1e-6:
            slope = (self._ny - self._n * self._y) / var
            if slope > 0:
                return max(self._y - slope * self._n, 0.0), slope
        return 0.0, self._y / max(self._n, 1e-9)

    def predict_ms(self, size: int) -> float:
        fixed, per_item = self.coefficients()
        return fixed + per_item * size

    def best_size(self, target_ms: float, lo: int, hi: int) -> int:
        """Largest size in [lo, hi] predicted to finish within target_ms (lo if none does)."""
        fixed, per_item = self.coefficients()
        if per_item <= 0:
            return hi
        return int(min(max((target_ms - fixed) // per_item, lo), hi))


@dataclass(eq=False)  # identity: items may be numpy arrays, which have no plain ==
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    urgent: bool
    key: Hashable | None
    queued_at: float = field(default_factory=time.monotonic)


class AdaptiveBatcher(Generic[T, R]):
    """Gathers requests from all sessions into batches for one model, on one worker thread.

    `process_batch(items)` runs on the worker thread and returns one result per item, in order;
    a result that is an exception goes to that item's awaiter only. If `process_batch` itself
    raises, every item of the batch gets that exception.
    """

    def __init__(
        self,
        process_batch: Callable[[list[T]], list[R | BaseException]],
        *,
        name: str,
        window_ms: float = 2.0,
        min_batch: int = 1,
        max_batch: int = 16,
        target_latency_ms: float | None = None,
        cost: Callable[[T], int] | None = None,
        shares_cpu: bool = True,
    ) -> None:
        """`shares_cpu`: counted by busy_batchers() while a batch runs (False for work too small
        to matter, like the VAD)."""
        if not 1 <= min_batch <= max_batch:
            raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
        self._process_batch = process_batch
        self._cost = cost
        self._shares_cpu = shares_cpu
        self.name = name
        self.window_ms = window_ms
        self.min_batch = min_batch
        self.max_batch = max_batch
        self.target_latency_ms = target_latency_ms
        self._urgent: deque[_Pending[T, R]] = deque()
        self._bulk: deque[_Pending[T, R]] = deque()
        self._by_key: dict[Hashable, _Pending[T, R]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._model = LatencyModel()
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._batches = self._items = self._superseded = self._units = 0
        self._waits = {True: QueueWaits(), False: QueueWaits()}  # by urgency
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    async def submit(self, item: T, *, urgent: bool = False, key: Hashable | None = None) -> R:
        """Queue `item` and wait for its result. Raises Superseded if a newer request with the
        same key replaced it while queued, BatcherClosed after close()."""
        loop = asyncio.get_running_loop()
        pending: _Pending[T, R] = _Pending(item, loop.create_future(), loop, urgent, key)
        with self._cond:
            if self._closed:
                raise BatcherClosed(f"batcher {self.name} is closed")
            self._enqueue(pending)
            self._cond.notify()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._discard(pending)
            raise

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker after its current batch; queued requests get BatcherClosed."""
        with self._cond:
            self._closed = True
            dropped = [*self._urgent, *self._bulk]
            self._urgent.clear()
            self._bulk.clear()
            self._by_key.clear()
            self._cond.notify_all()
        for p in dropped:
            _deliver(p, BatcherClosed(f"batcher {self.name} closed"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def stats(self) -> BatcherStats:
        with self._cond:
            lat = np.array(self._latencies_ms) if self._latencies_ms else np.zeros(1)
            fixed, per_item = self._model.coefficients()
            return BatcherStats(
                name=self.name,
                batches=self._batches,
                items=self._items,
                superseded=self._superseded,
                mean_batch_size=self._items / max(self._batches, 1),
                p50_latency_ms=float(np.percentile(lat, 50)),
                p95_latency_ms=float(np.percentile(lat, 95)),
                fixed_ms=fixed,
                per_item_ms=per_item,
                next_batch_size=self._next_batch_size(),
                units=self._units,
                queue_delay_ms=self._queue_delay_ms(),
            )

    def queue_delay_ms(self) -> float:
        """How far behind this engine is, ms (see QueueWaits.delay_ms). Urgent requests when any
        were queued recently: bulk ones (partial transcripts, later sentences) may wait behind them
        by design, so their wait says the engine is behind only for an engine that has no urgent
        requests (the VAD)."""
        with self._cond:
            return self._queue_delay_ms()

    def _queue_delay_ms(self) -> float:
        now = time.monotonic()
        if self._urgent or self._waits[True].seen(now):
            return self._waits[True].delay_ms(now, self._urgent[0].queued_at if self._urgent else None)
        return self._waits[False].delay_ms(now, self._bulk[0].queued_at if self._bulk else None)

    # -- queue (callers hold self._cond) ---------------------------------------------------------

    def _enqueue(self, pending: _Pending[T, R]) -> None:
        older = self._by_key.get(pending.key) if pending.key is not None else None
        queue = self._urgent if pending.urgent else self._bulk
        if older is not None:
            old_queue = self._urgent if older.urgent else self._bulk
            self._superseded += 1
            _deliver(older, Superseded(f"{self.name}: superseded by a newer request for {pending.key!r}"))
            if old_queue is queue:  # take the older one's place: a repeatedly superseded key never starves
                queue[queue.index(older)] = pending
            else:
                old_queue.remove(older)
                queue.append(pending)
        else:
            queue.append(pending)
        if pending.key is not None:
            self._by_key[pending.key] = pending

    def _discard(self, pending: _Pending[T, R]) -> None:
        """Drop a request whose awaiter was cancelled, if the worker has not taken it yet."""
        with self._cond:
            for queue in (self._urgent, self._bulk):
                if pending in queue:
                    queue.remove(pending)
            if pending.key is not None and self._by_key.get(pending.key) is pending:
                del self._by_key[pending.key]

    def _queued(self) -> int:
        return len(self._urgent) + len(self._bulk)

    @property
    def queued(self) -> int:
        """Requests waiting (not counting the batch running now): callers use it to shed
        best-effort work (partial transcripts) when the engine is behind."""
        with self._cond:
            return self._queued()

    def _units_of(self, pending: _Pending[T, R]) -> int:
        return 1 if self._cost is None else max(int(self._cost(pending.item)), 1)

    def _queued_units(self) -> int:
        if self._cost is None:
            return self._queued()
        return sum(self._units_of(p) for queue in (self._urgent, self._bulk) for p in queue)

    def _take(self, size: int) -> list[_Pending[T, R]]:
        """Urgent first, then bulk, in order, up to `size` units; the first item always fits."""
        batch: list[_Pending[T, R]] = []
        units = 0
        now = time.monotonic()
        for queue in (self._urgent, self._bulk):
            while queue:
                need = self._units_of(queue[0])
                if batch and units + need > size:
                    return batch
                units += need
                pending = queue.popleft()
                self._waits[pending.urgent].started(pending.queued_at, now)
                if pending.key is not None and self._by_key.get(pending.key) is pending:
                    del self._by_key[pending.key]
                batch.append(pending)
        return batch

    def _next_batch_size(self) -> int:
        if self.target_latency_ms is None:
            return self.max_batch
        return self._model.best_size(self.target_latency_ms, self.min_batch, self.max_batch)

    # -- worker thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            if batch:
                self._process(batch)

    def _gather(self) -> list[_Pending[T, R]] | None:
        """Wait for a first request, then for more until window_ms after the oldest queued one
        (a request that already waited while the worker was busy is not held back again)."""
        with self._cond:
            while not self._queued() and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            size = self._next_batch_size()
            oldest = min(q[0].queued_at for q in (self._urgent, self._bulk) if q)
            deadline = oldest + self.window_ms / 1000.0
            while self._queued_units() < size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take(size)

    def _process(self, batch: list[_Pending[T, R]]) -> None:
        started = time.perf_counter()
        results: list[Any]
        if self._shares_cpu:
            _mark_busy(1)
        try:
            results = list(self._process_batch([p.item for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: process_batch returned {len(results)} results "
                                   f"for {len(batch)} items")
        except Exception as exc:  # one failure for the whole batch goes to every item
            log.warning("%s: batch of %d failed: %r", self.name, len(batch), exc)
            results = [exc] * len(batch)
        finally:
            if self._shares_cpu:
                _mark_busy(-1)
        latency_ms = (time.perf_counter() - started) * 1000.0
        units = sum(self._units_of(p) for p in batch)
        with self._cond:
            self._units += units
            self._model.observe(units, latency_ms)
            self._latencies_ms.append(latency_ms)
            self._batches += 1
            self._items += len(batch)
        for pending, result in zip(batch, results, strict=True):
            _deliver(pending, result)


def _deliver(pending: _Pending[Any, Any], result: Any) -> None:
    """Settle the awaiter's future on its own loop; a closed loop or a cancelled awaiter is fine."""
    with contextlib.suppress(RuntimeError):  # the awaiter's loop is closed: nobody is waiting
        pending.loop.call_soon_threadsafe(_settle, pending.future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
