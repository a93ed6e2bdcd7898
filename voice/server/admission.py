"""Overload admission: let a new session in only while the calls already up are served in time.

`server.max_sessions` is a fixed ceiling; what a box can serve depends on the models, the device
and what the callers do. So the server also learns a session limit from what it measures, every
`sample_interval_ms`:

- each engine's queue delay: how long requests waited for the engine's worker lately
  (`AdaptiveBatcher.queue_delay_ms`, `LlamaCppEngine.queue_delay_ms`): an engine behind real time;
- the p95 of the server-side voice-to-voice latency of the turns of the last `turn_window_s`
  (`metrics.RECENT_VOICE_TO_VOICE_MS`): on a small CPU the engines slow each other down without
  queueing (every stage takes longer while the others run), which only the turn latency shows.

- Overloaded (an engine's delay > `max_queue_delay_ms`, or the turn p95 > `max_turn_p95_ms`): the
  limit drops to one below the most sessions that ran while the measures were taken (the turn
  window; never under `min_sessions`). Sessions already up are never cut; admitting no one more
  is what lets them recover. After a cut the next one waits `cut_hold_s`, and turns
  from before a change of the limit no longer count.
- Calm (every delay < `calm_queue_delay_ms` and the turn p95 < `calm_turn_p95_ms`) for
  `grow_after_s` while the limit is reached: the limit grows by one (a probe), up to max_sessions.
- Not calm (between the calm and the overload bounds): at most one new session per `settle_s`. A
  new call's load shows in the measures only after its first turn (5-10 s), so without pacing a
  burst of arrivals is all let in before the first overload is seen (measured: 6 callers arriving
  1.7 s apart were all admitted, p95 7.8 s, 1 turn lost). Calm boxes admit freely.
- Refused sessions get SERVER_BUSY with a retry hint; /healthz and /metrics show the state.

The limit starts at max_sessions: with nothing measured yet nobody is refused, and the first
overload teaches the limit. It is additive-increase / cut-to-what-worked, like TCP's congestion
window: it settles just under the load where the queues start to grow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from voice import metrics

log = logging.getLogger(__name__)


class AdmissionSettings(BaseModel):
    """`[server.admission]`: admission from measured capacity (module docstring)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True                # false: only server.max_sessions limits sessions
    #: An engine whose requests waited longer than this lately is behind real time: stop admitting.
    #: A caller notices ~1 s more before the reply; one session alone waits < 0.5 s (docs/operations.md).
    max_queue_delay_ms: float = Field(1000.0, gt=0)
    calm_queue_delay_ms: float = Field(300.0, ge=0)  # all engines under this: the limit may grow
    #: Server-side voice-to-voice p95 of recent turns over this: callers wait too long, stop admitting.
    #: Past ~3 s callers repeat themselves or think the line is dead (docs/operations.md).
    max_turn_p95_ms: float = Field(3000.0, gt=0)
    calm_turn_p95_ms: float = Field(2000.0, ge=0)    # recent turns under this: the limit may grow
    turn_window_s: float = Field(60.0, gt=0)         # the turns the p95 is taken over
    min_turns: int = Field(5, ge=1)                  # fewer turns in the window: the p95 is not used
    min_sessions: int = Field(1, ge=0)               # never refuse while fewer sessions run
    grow_after_s: float = Field(10.0, ge=0)          # calm at the limit this long -> one more session
    settle_s: float = Field(10.0, ge=0)              # not calm: at most one new session this often
    cut_hold_s: float = Field(5.0, ge=0)             # after a cut, the next one waits this long
    sample_interval_ms: float = Field(500.0, gt=0)   # how often the engines' queue delays are read
    retry_after_s: int = Field(10, ge=1)             # the hint to refused clients (ERROR text, Retry-After)


@dataclass(frozen=True)
class Refusal:
    reason: str        # "max_sessions" | "capacity"
    message: str       # the ERROR frame's text, with the retry hint
    retry_after_s: int


def engine_queue_delays_ms(engines: object) -> dict[str, float]:
    """{engine name: queue delay, ms} for every engine that measures one (an OpenAI-compatible LLM
    engine queues on its own server and does not)."""
    delays: dict[str, float] = {}
    for field in dataclasses.fields(engines):  # type: ignore[arg-type]
        engine = getattr(engines, field.name)
        if hasattr(engine, "queue_delay_ms"):
            delays[field.name] = float(engine.queue_delay_ms())
        elif hasattr(engine, "stats"):
            delays[field.name] = float(getattr(engine.stats(), "queue_delay_ms", 0.0))
    return delays


def recent_voice_to_voice_ms(window_s: float) -> list[float]:
    return metrics.RECENT_VOICE_TO_VOICE_MS.recent(window_s)


class AdmissionControl:
    """The learned session limit; `observe` updates it, `check` answers a new connection."""

    def __init__(self, settings: AdmissionSettings, max_sessions: int):
        self.settings = settings
        self.max_sessions = max_sessions
        self.limit = max_sessions
        self.delays_ms: dict[str, float] = {}
        self.turn_p95_ms: float | None = None
        self.overloaded = False
        self.calm = True
        self._last_admitted = float("-inf")
        self._calm_since: float | None = None
        self._last_cut = float("-inf")
        self._last_change = float("-inf")
        self._sessions_seen: deque[tuple[float, int]] = deque(maxlen=1024)  # (time, sessions) samples
        metrics.ADMISSION_LIMIT.set(self.limit)

    def turn_window_s(self, now: float) -> float:
        """How far back turns count: `turn_window_s`, but never before the limit last changed (the
        turns of another load say nothing about this one)."""
        return min(self.settings.turn_window_s, now - self._last_change)

    def observe(self, now: float, sessions: int, delays_ms: dict[str, float],
                turn_latencies_ms: list[float] | None = None) -> None:
        """One sample: `now` (s, monotonic), sessions running, each engine's queue delay (ms), the
        voice-to-voice latencies (ms) of the turns in the last `turn_window_s(now)`."""
        cfg = self.settings
        self.delays_ms = delays_ms
        self._sessions_seen.append((now, sessions))
        latencies = turn_latencies_ms or []
        self.turn_p95_ms = float(np.percentile(latencies, 95)) if len(latencies) >= cfg.min_turns else None
        worst = max(delays_ms.values(), default=0.0)
        slow = self.turn_p95_ms is not None and self.turn_p95_ms > cfg.max_turn_p95_ms
        self.overloaded = worst > cfg.max_queue_delay_ms or slow
        self.calm = worst < cfg.calm_queue_delay_ms and (self.turn_p95_ms or 0.0) < cfg.calm_turn_p95_ms
        if self.overloaded:
            self._calm_since = None
            self._cut(now)
        elif self.calm and sessions >= self.limit:
            self._calm_since = now if self._calm_since is None else self._calm_since
            if now - self._calm_since >= cfg.grow_after_s and self.limit < self.max_sessions:
                self._set_limit(self.limit + 1, now)
                self._calm_since = now
        else:
            self._calm_since = None
        for name, ms in delays_ms.items():
            metrics.ENGINE_QUEUE_DELAY.labels(name).set(ms / 1000.0)
        metrics.ADMISSION_TURN_P95.set((self.turn_p95_ms or 0.0) / 1000.0)
        metrics.ADMISSION_OVERLOADED.set(int(self.overloaded))

    def _cut(self, now: float) -> None:
        """One below the most sessions that ran while the measures were taken."""
        since = now - self.turn_window_s(now)
        peak = max((n for at, n in self._sessions_seen if at > since), default=self.limit)
        cut = max(self.settings.min_sessions, min(self.limit, peak - 1), 1)
        if now - self._last_cut >= self.settings.cut_hold_s and cut < self.limit:
            self._set_limit(cut, now)
            self._last_cut = now

    def _set_limit(self, limit: int, now: float) -> None:
        log.info("admission limit", extra={"limit": limit, "was": self.limit, "turn_p95_ms": self.turn_p95_ms,
                                           "queue_delay_ms": {k: round(v) for k, v in self.delays_ms.items()}})
        self.limit = limit
        self._last_change = now
        metrics.ADMISSION_LIMIT.set(limit)

    def check(self, sessions: int, now: float | None = None) -> Refusal | None:
        """None to admit one more session next to `sessions` running ones (then it counts as
        admitted now), else why not (counted on /metrics)."""
        now = time.monotonic() if now is None else now
        refusal = self.refusal(sessions, now)
        if refusal is None:
            self._last_admitted = now
        else:
            metrics.ADMISSION_REFUSED.labels(refusal.reason).inc()
        return refusal

    def refusal(self, sessions: int, now: float | None = None) -> Refusal | None:
        """What `check` would answer, without counting it (for /healthz and /readyz)."""
        cfg = self.settings
        now = time.monotonic() if now is None else now
        hint = f"retry after {cfg.retry_after_s} s (retry_after_ms={cfg.retry_after_s * 1000})"
        if sessions >= self.max_sessions:
            return Refusal("max_sessions", f"server is at its limit of {self.max_sessions} sessions; {hint}",
                           cfg.retry_after_s)
        if not cfg.enabled or sessions < cfg.min_sessions:
            return None
        p95 = f"{self.turn_p95_ms:.0f} ms" if self.turn_p95_ms is not None else "-"
        engine, delay = max(self.delays_ms.items(), key=lambda kv: kv[1], default=("-", 0.0))
        measured = f"turn p95 {p95}, longest queue {engine} {delay:.0f} ms"
        if sessions >= self.limit:
            return Refusal("capacity", f"server is at its measured capacity of {self.limit} sessions ({measured}); "
                                       f"{hint}", cfg.retry_after_s)
        if not self.calm and now - self._last_admitted < cfg.settle_s:
            return Refusal("settling", f"server is busy ({measured}) and still measuring its newest call; {hint}",
                           cfg.retry_after_s)
        return None

    def state(self) -> dict:
        """For /healthz. `session_limit` is learned even while disabled: what it would enforce."""
        return {"enabled": self.settings.enabled, "session_limit": self.limit, "overloaded": self.overloaded,
                "calm": self.calm,
                "queue_delay_ms": {k: round(v, 1) for k, v in self.delays_ms.items()},
                "turn_p95_ms": None if self.turn_p95_ms is None else round(self.turn_p95_ms),
                "retry_after_s": self.settings.retry_after_s}

    async def run(self, sessions: Callable[[], int], delays_ms: Callable[[], dict[str, float]],
                  turn_latencies_ms: Callable[[float], list[float]] | None = None) -> None:
        """Sample until cancelled (the server's lifetime). `turn_latencies_ms(window_s)`: the
        voice-to-voice of the turns of the last window_s (default: metrics.RECENT_VOICE_TO_VOICE_MS)."""
        interval_s = self.settings.sample_interval_ms / 1000.0
        recent = turn_latencies_ms or recent_voice_to_voice_ms
        while True:
            try:
                now = time.monotonic()
                self.observe(now, sessions(), delays_ms(), recent(self.turn_window_s(now)))
            except Exception:  # a broken engine stat must not stop admission sampling
                log.exception("admission sample failed")
            await asyncio.sleep(interval_s)
