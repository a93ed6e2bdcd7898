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
  limit drops to one below the sessions running now (never under `min_sessions`). Sessions already
  up are never cut; admitting no one more is what lets them recover. After a cut the next one
  waits `cut_hold_s`, and there is none while more sessions run than the limit: those admitted
  before the cut keep the measures high for a while, which says nothing new about the limit.
- Calm (every delay < `calm_queue_delay_ms` and the turn p95 < `calm_turn_p95_ms`) for
  `grow_after_s` while the limit is reached: the limit grows by one (a probe), up to max_sessions.
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
        self._calm_since: float | None = None
        self._last_cut = float("-inf")
        self._last_change = float("-inf")
        metrics.ADMISSION_LIMIT.set(self.limit)

    def turn_window_s(self, now: float) -> float:
        """How far back turns count: `turn_window_s`, but never before the limit last changed (the
        turns of another load say nothing about this one)."""
        return min(self.settings.turn_window_s, now - self._last_change)

    def observe(self, now: float, sessions: int, delays_ms: dict[str, float],
                turn_latencies_ms: list[float] | None = None) -> None:
        """One sample: `now` (s, monotonic), sessions running, each engine's queue delay (ms), the
        voice-to-voice latencies (ms) of the turns in the last `turn_window_s`."""
        cfg = self.settings
        self.delays_ms = delays_ms
        latencies = turn_latencies_ms or []
        self.turn_p95_ms = float(np.percentile(latencies, 95)) if len(latencies) >= cfg.min_turns else None
        worst = max(delays_ms.values(), default=0.0)
        slow = self.turn_p95_ms is not None and self.turn_p95_ms > cfg.max_turn_p95_ms
        self.overloaded = worst > cfg.max_queue_delay_ms or slow
        calm = worst < cfg.calm_queue_delay_ms and (self.turn_p95_ms or 0.0) < cfg.calm_turn_p95_ms
        if self.overloaded:
            self._calm_since = None
            if now - self._last_cut >= cfg.cut_hold_s and sessions <= self.limit:
                self._set_limit(max(cfg.min_sessions, sessions - 1, 1), now, worst)
                self._last_cut = now
        elif calm and sessions >= self.limit:
            self._calm_since = now if self._calm_since is None else self._calm_since
            if now - self._calm_since >= cfg.grow_after_s and self.limit < self.max_sessions:
                self._set_limit(self.limit + 1, now, worst)
                self._calm_since = now
        else:
            self._calm_since = None
        for name, ms in delays_ms.items():
            metrics.ENGINE_QUEUE_DELAY.labels(name).set(ms / 1000.0)
        metrics.ADMISSION_TURN_P95.set((self.turn_p95_ms or 0.0) / 1000.0)
        metrics.ADMISSION_OVERLOADED.set(int(self.overloaded))

    def _set_limit(self, limit: int, now: float, worst_ms: float) -> None:
        if limit != self.limit:
            log.info("admission limit", extra={"limit": limit, "was": self.limit, "queue_delay_ms": round(worst_ms),
                                               "turn_p95_ms": round(self.turn_p95_ms or 0)})
        self.limit = limit
        self._last_change = now
        metrics.ADMISSION_LIMIT.set(limit)

    def check(self, sessions: int) -> Refusal | None:
        """None to admit one more session next to `sessions` running ones, else why not (counted)."""
        refusal = self.refusal(sessions)
        if refusal is not None:
            metrics.ADMISSION_REFUSED.labels(refusal.reason).inc()
        return refusal

    def refusal(self, sessions: int) -> Refusal | None:
        """What `check` would answer, without counting it (for /healthz and /readyz)."""
        retry = self.settings.retry_after_s
        hint = f"retry after {retry} s (retry_after_ms={retry * 1000})"
        if sessions >= self.max_sessions:
            return Refusal("max_sessions", f"server is at its limit of {self.max_sessions} sessions; {hint}", retry)
        if self.settings.enabled and sessions >= max(self.limit, self.settings.min_sessions):
            p95 = f"{self.turn_p95_ms:.0f} ms" if self.turn_p95_ms is not None else "-"
            engine, delay = max(self.delays_ms.items(), key=lambda kv: kv[1], default=("-", 0.0))
            return Refusal("capacity", f"server is at its measured capacity of {self.limit} sessions "
                                       f"(turn p95 {p95}, longest queue {engine} {delay:.0f} ms); {hint}", retry)
        return None

    def state(self) -> dict:
        """For /healthz. `session_limit` is learned even while disabled: what it would enforce."""
        return {"enabled": self.settings.enabled, "session_limit": self.limit, "overloaded": self.overloaded,
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
