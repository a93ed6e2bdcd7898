"""Per-session rate limits for what costs the server model time without costing the client audio:
typed turns, DTMF, and control messages. Audio is paced by the microphone; text is not."""

from __future__ import annotations

import time


class RateLimiter:
    """A token bucket: `burst` actions at once, then one every `per_s` seconds on average."""

    def __init__(self, burst: int, per_s: float, clock=time.monotonic) -> None:
        self.burst, self.per_s, self._clock = burst, per_s, clock
        self._tokens = float(burst)
        self._at = clock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
