"""Per-turn latency: one typed record per user turn, stamped as the turn moves through the stages.

All stamps are time.monotonic() seconds; stages are reported in ms from the end of user speech
(the wall time at which the last speech sample reached the server), which is what a person feels
as the agent's reaction time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from voice import metrics

STAGES = ("final_transcript", "first_llm_token", "first_tts_audio", "first_audio_sent")


@dataclass
class TurnMetrics:
    turn: int
    speech_end: float | None = None
    stamps: dict[str, float] = field(default_factory=dict)

    def stamp(self, stage: str, at: float | None = None) -> None:
        """Record the first time a stage is reached (later calls are ignored)."""
        self.stamps.setdefault(stage, time.monotonic() if at is None else at)

    def stages_ms(self) -> dict[str, float]:
        """Each reached stage in ms after the end of user speech, plus voice_to_voice."""
        if self.speech_end is None:
            return {}
        out = {s: round((self.stamps[s] - self.speech_end) * 1000, 1) for s in STAGES if s in self.stamps}
        if "first_audio_sent" in out:
            out["voice_to_voice"] = out["first_audio_sent"]
        return out

    def export(self) -> None:
        """Observe the stages on /metrics."""
        for stage, ms in self.stages_ms().items():
            if stage != "voice_to_voice":
                metrics.TURN_STAGE.labels(stage).observe(ms / 1000)
            else:  # what callers feel now: the admission control's latency signal
                metrics.RECENT_VOICE_TO_VOICE_MS.add(ms)


class ArrivalClock:
    """Maps input-stream positions (ms of 16 kHz audio) to the wall time they arrived, so the end
    of speech the VAD reports as a stream position becomes a wall-clock instant."""

    def __init__(self, keep: int = 512):
        self._marks: list[tuple[float, float]] = []  # (stream_end_ms, arrival monotonic)
        self._keep = keep

    def arrived(self, stream_end_ms: float, at: float | None = None) -> None:
        self._marks.append((stream_end_ms, time.monotonic() if at is None else at))
        if len(self._marks) > self._keep:
            del self._marks[: len(self._marks) - self._keep]

    def time_of(self, stream_ms: float) -> float | None:
        """Arrival time of the chunk holding `stream_ms`; None if it is older than what we keep."""
        for end_ms, at in self._marks:
            if end_ms >= stream_ms:
                return at
        return self._marks[-1][1] if self._marks else None
