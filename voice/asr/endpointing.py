"""End of turn: is the user done, or only pausing? Audio model + words + silence, per session.

Two signals, neither enough alone (docs/turn-taking.md):
- the audio: Smart Turn v3.2's P(turn complete) from the last 8 s of speech (voice/asr/smart_turn.py).
  It hears intonation, so it rates a phrase spoken with falling pitch as complete even when the
  sentence is plainly unfinished (8 of 12 TTS-spoken first halves);
- the words: `words_verdict(text)`, English lexical rules on the transcript so far. A sentence that
  ends in "for", "the", "and", "um" or a half-dictated phone number is unfinished whatever the
  pitch; "thank you", "bye" or a bare "yes" finish it. Whisper punctuates from its language model
  ("." on almost everything, "?" on question-shaped prefixes), so its punctuation proves nothing.

Combination (`combine`): words incomplete -> incomplete, whatever the audio says; words complete ->
the audio's odds are multiplied by 9, so only a confident "incomplete" from the audio keeps
listening; words unknown -> the audio decides. The result is compared with the threshold of the
session's eagerness. Complete -> the turn ends after `complete_silence_ms` of silence; otherwise
after `max_silence_ms`. Without the audio model (not installed, or failed in this session) the
words decide, and "unknown" waits today's fixed silence (500 ms).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voice.asr.smart_turn import SmartTurnEngine
from voice.asr.turn_words import WordsVerdict, words_verdict
from voice.batching import Superseded

log = logging.getLogger(__name__)

Eagerness = Literal["low", "medium", "high", "auto"]

#: Silence that ends any turn when `max_silence_ms` is None, by eagerness (ms). Low eagerness lets
#: the user think longer; high answers sooner and risks cutting a slow speaker.
MAX_SILENCE_MS: dict[str, float] = {"low": 3000.0, "medium": 2000.0, "auto": 2000.0, "high": 1200.0}
#: P(complete) a turn needs when `threshold` is None, by eagerness (Smart Turn's own cut is 0.5).
THRESHOLD: dict[str, float] = {"low": 0.7, "medium": 0.5, "auto": 0.5, "high": 0.3}
#: Today's fixed VAD silence (VadSettings.min_silence_ms): mode "silence", and the wait when the
#: words say nothing and no audio model is available (ms).
SILENCE_ONLY_MS = 500.0
#: Words that end a turn ("thank you", "yes") multiply the audio's odds of "complete" by this
#: (log-odds +2.2): the audio must be below ~0.1 to keep such a turn open at threshold 0.5.
WORDS_COMPLETE_ODDS = 9.0
#: Words that leave the sentence open scale the audio's probability down to this fraction; the
#: verdict is "incomplete" whatever the audio says.
WORDS_INCOMPLETE_SCALE = 0.1
#: A combined P(complete) this high ends the turn after complete_silence_ms; below it the wait grows.
SURE = 0.9
#: An audio verdict later than this is not waited for: that call falls back to the words (ms).
AUDIO_TIMEOUT_MS = 1000.0


class TurnDetectionSettings(BaseModel):
    """When a user's turn ends; per session (HELLO, flow state), defaults in TurnSettings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["smart", "silence"] = "smart"
    """"smart": audio model + words + silence; "silence": a fixed silence ends every turn
    (`max_silence_ms`, or 500 ms when None: today's VAD behaviour; OpenAI server_vad)."""
    eagerness: Eagerness = "auto"
    """How soon to answer (OpenAI semantic_vad): sets `max_silence_ms` and `threshold` when they
    are None. low 3000 ms / 0.7, medium and auto 2000 ms / 0.5, high 1200 ms / 0.3."""
    complete_silence_ms: float = Field(250.0, ge=0.0, le=10000.0)
    """Silence (ms) that ends a turn judged complete."""
    max_silence_ms: float | None = Field(None, gt=0.0, le=30000.0)
    """Silence (ms) that ends any turn, complete or not; None: by eagerness."""
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Combined P(complete) a turn needs to count as complete; None: by eagerness."""

    @model_validator(mode="after")
    def _max_not_below_complete(self) -> TurnDetectionSettings:
        if self.max_silence_ms is not None and self.mode == "smart" and self.max_silence_ms < self.complete_silence_ms:
            raise ValueError(f"max_silence_ms {self.max_silence_ms} must be ≥ complete_silence_ms "
                             f"{self.complete_silence_ms}")
        return self

    @property
    def effective_max_silence_ms(self) -> float:
        if self.max_silence_ms is not None:
            return self.max_silence_ms
        return SILENCE_ONLY_MS if self.mode == "silence" else MAX_SILENCE_MS[self.eagerness]

    @property
    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else THRESHOLD[self.eagerness]


class TurnSettings(BaseModel):
    """The `turn` section of the server settings: the audio model and the sessions' defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str | None = "smart-turn-v3.2"
    """Registry name or an .onnx path; None, "" or "none": no audio model (words + silence only)."""
    defaults: TurnDetectionSettings = Field(default_factory=TurnDetectionSettings)
    """Sessions may override them (HELLO, flow states, Realtime turn_detection)."""

    @field_validator("model")
    @classmethod
    def _none_means_none(cls, model: str | None) -> str | None:
        return None if model is None or model.strip().lower() in ("", "none") else model


@dataclass(frozen=True)
class TurnVerdict:
    """One judgement of the turn so far."""

    complete: bool
    probability: float  # combined P(complete), 0..1
    audio_probability: float | None  # Smart Turn; None when unavailable, failed or not asked
    words: WordsVerdict  # "complete" | "incomplete" | "unknown"
    reason: str  # short, human-readable: "ends with 'for'", "audio 0.93"
    wait_ms: float  # silence (ms, counted from the end of speech) to wait before ending the turn


def combine(audio: float | None, words: WordsVerdict, words_reason: str,
            settings: TurnDetectionSettings) -> TurnVerdict:
    """The policy: one verdict from the two signals (pure; see the module docstring)."""
    threshold = settings.effective_threshold
    short, long = settings.complete_silence_ms, settings.effective_max_silence_ms
    if words == "incomplete":
        p = WORDS_INCOMPLETE_SCALE * (audio if audio is not None else 0.5)
        return TurnVerdict(False, p, audio, words, _reason(words_reason, audio), long)
    if audio is None:
        if words == "complete":
            return TurnVerdict(True, 1.0 - WORDS_INCOMPLETE_SCALE, None, words, words_reason, short)
        wait = max(short, min(SILENCE_ONLY_MS, long))  # today's fixed silence: no worse than before
        return TurnVerdict(False, 0.5, None, words, f"{words_reason}; no audio model", wait)
    p = _scale_odds(audio, WORDS_COMPLETE_ODDS) if words == "complete" else audio
    complete = p >= threshold
    wait = _confident_wait(p, threshold, short, long) if complete else long
    return TurnVerdict(complete, p, audio, words, _reason(words_reason, audio), wait)


def _confident_wait(p: float, threshold: float, short: float, long: float) -> float:
    """Silence to wait on a turn judged complete: `short` when sure (p ≥ SURE), up to half way to
    `long` just above the threshold — a doubtful "complete" costs a little time instead of cutting
    the user off (how LiveKit spreads its endpointing delay between a minimum and a maximum)."""
    if p >= SURE or threshold >= SURE:
        return short
    doubt = (SURE - p) / (SURE - threshold)
    return short + 0.5 * (long - short) * min(max(doubt, 0.0), 1.0)


def _scale_odds(p: float, factor: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    odds = p / (1.0 - p) * factor
    return odds / (1.0 + odds)


def _reason(words_reason: str, audio: float | None) -> str:
    return words_reason if audio is None else f"{words_reason}; audio {audio:.2f}"


class EndOfTurnDetector:
    """One per session: asks the shared SmartTurnEngine (if any) and the words, and combines them.

    A failure of the audio model in this session (ONNX error, bad audio) is logged once; the
    session then goes on with words + silence and never asks the engine again. Other sessions
    are untouched: the engine fails only the one request.
    """

    def __init__(self, engine: SmartTurnEngine | None, settings: TurnDetectionSettings) -> None:
        self._engine = engine
        self._key = object()  # a newer question of this session supersedes its queued older one
        self.audio_failed = False
        self.retune(settings)

    def retune(self, settings: TurnDetectionSettings) -> None:
        """New settings from now on (a flow state, a Realtime session.update)."""
        self.settings = settings

    @property
    def uses_audio(self) -> bool:
        return self._engine is not None and not self.audio_failed and self.settings.mode == "smart"

    async def judge(self, audio_16k: np.ndarray, text: str) -> TurnVerdict:
        """Judge the turn so far: the speech since the turn began (16 kHz mono float32; the last
        8 s are used) and its transcript. Never raises (only CancelledError passes through)."""
        settings = self.settings
        if settings.mode == "silence":
            wait = settings.effective_max_silence_ms
            return TurnVerdict(True, 1.0, None, "unknown", f"silence mode: {wait:.0f} ms", wait)
        try:
            words, words_reason = words_verdict(text if isinstance(text, str) else "")
            audio = await self._audio_probability(audio_16k) if words != "incomplete" else None
            return combine(audio, words, words_reason, settings)
        except Exception:  # a bug here must not end the session: silence-only for this turn
            log.exception("end-of-turn judgement failed; this turn ends on silence")
            return TurnVerdict(False, 0.5, None, "unknown", "judgement failed", SILENCE_ONLY_MS)

    async def _audio_probability(self, audio_16k: np.ndarray) -> float | None:
        """Smart Turn's P(complete), or None when there is no model, no audio, or it failed."""
        if not self.uses_audio or audio_16k is None or len(audio_16k) == 0:
            return None
        assert self._engine is not None
        try:
            p = await asyncio.wait_for(self._engine.probability(audio_16k, key=self._key),
                                       AUDIO_TIMEOUT_MS / 1000.0)
        except (Superseded, TimeoutError):
            return None  # a newer question replaced this one, or the engine is behind: words only
        except Exception as exc:
            self.audio_failed = True
            log.warning("end-of-turn audio model failed in this session; it goes on with words + silence: %r", exc)
            return None
        return p if math.isfinite(p) else None
