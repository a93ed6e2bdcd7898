"""Streaming transcription of one utterance: partials with LocalAgreement-2, a final, and a guard
against Whisper's hallucinations.

While the user speaks, the growing utterance is re-decoded every `partial_interval_ms`. Two
consecutive decodes rarely agree on the last word or two (it is still being spoken), so only the
word prefix they agree on is published as `stable_text`, and stable words are never taken back
(LocalAgreement-2, Macháček et al. 2023). `text` is the stable prefix plus the rest of the latest
hypothesis, so `stable_text` is always a prefix of `text`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Hashable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from voice.asr.whisper import SAMPLE_RATE_HZ, AsrResult
from voice.batching import Superseded

log = logging.getLogger(__name__)

_NOT_WORD = re.compile(r"[^\w']+")


class Transcriber(Protocol):
    """What StreamingTranscriber needs from an engine (WhisperEngine has it)."""

    async def transcribe(
        self, audio_16k: np.ndarray, *, final: bool, key: Hashable | None = None
    ) -> AsrResult:
        ...


class GuardSettings(BaseModel):
    """When to drop a Whisper result as a hallucination rather than publish it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    no_speech_prob_max: float = Field(0.6, ge=0.0, le=1.0)
    """Drop when no_speech_prob is above this AND avg_logprob is below avg_logprob_min."""
    avg_logprob_min: float = Field(-1.0, le=0.0)
    compression_ratio_max: float = Field(2.4, gt=1.0)
    """Drop when the text compresses this well: a repetition loop ("the the the ...")."""
    silence_phrases: tuple[str, ...] = (
        "thank you", "thanks", "thank you very much", "thanks for watching", "thank you for watching",
        "you", "bye", "bye bye", "okay", "so", "oh",
    )
    """What Whisper says to silence and noise (normalized: lower case, no punctuation). Dropped only
    when the utterance is short or quiet, so a real "thank you" at speaking level survives."""
    silence_prefixes: tuple[str, ...] = ("subtitles by", "translated by", "transcribed by", "captions by")
    short_utterance_s: float = Field(1.0, ge=0.0)
    """A silence phrase in an utterance shorter than this (VAD padding included) is dropped."""
    quiet_rms_dbfs: float = Field(-40.0, le=0.0)
    """A silence phrase in an utterance quieter than this (RMS, dB full scale) is dropped."""


class AsrSettings(BaseModel):
    """Per-session streaming ASR knobs; times in ms of utterance audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partials: bool = True
    early_final: bool = True
    """Start the final decode as soon as the VAD knows where the turn would end (speech padding
    heard), instead of after min_silence_ms: the decode overlaps the end-of-turn silence. If the
    user speaks again, the early result is thrown away."""
    early_tail_ms: float = Field(100.0, ge=0.0)
    """How much of the silence the early decode waits for (capped by the VAD's speech_pad_ms, which
    the final would include): enough not to clip a trailing consonant the VAD scored as silence."""
    partial_interval_ms: float = Field(600.0, ge=100.0)
    """Re-decode the utterance each time it has grown by this much."""
    max_partial_audio_ms: float = Field(28000.0, gt=0.0, le=30000.0)
    """No partials past this length: each would be a whole 30 s Whisper window; the final still
    covers everything."""
    guard: GuardSettings = GuardSettings()


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing hypotheses."""
    return [w for w in (_NOT_WORD.sub("", t.lower()) for t in text.split()) if w]


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of float32 audio in dB relative to full scale (-120 for silence)."""
    if len(audio) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(20.0 * np.log10(max(rms, 1e-6)), -120.0)


class HallucinationGuard:
    """Decides whether a Whisper result is a hallucination; pure and stateless."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings or GuardSettings()

    def reject_reason(self, result: AsrResult, level_dbfs: float) -> str | None:
        """Why `result` must be dropped, or None to keep it. `level_dbfs`: RMS of the audio."""
        s = self.settings
        words = normalize_words(result.text)
        if not words:
            return "empty"
        if result.no_speech_prob > s.no_speech_prob_max and result.avg_logprob < s.avg_logprob_min:
            return "no speech"
        if result.compression_ratio > s.compression_ratio_max:
            return "repetitive"
        phrase = " ".join(words)
        is_silence_phrase = phrase in s.silence_phrases or any(
            phrase == p or phrase.startswith(p + " ") for p in s.silence_prefixes)
        if is_silence_phrase and (result.duration_s < s.short_utterance_s or level_dbfs < s.quiet_rms_dbfs):
            return "silence phrase"
        return None


class LocalAgreement:
    """LocalAgreement-2 over words: commits the prefix that two consecutive hypotheses share.

    Words compare case- and punctuation-insensitively ("Clubs." == "clubs"). Newly agreed words
    take the latest hypothesis's spelling; once committed they are never changed or taken back.
    """

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] = []

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Feed the latest hypothesis; returns (text, stable_text)."""
        words = hypothesis.split()
        n = len(self.committed)
        agreed = _common_prefix_len(_keys(self._previous), _keys(words))
        if agreed > n and _keys(words[:n]) == _keys(self.committed):
            self.committed = self.committed + words[n:agreed]
        self._previous = words
        return " ".join(self.committed + words[len(self.committed):]), " ".join(self.committed)


def _keys(words: list[str]) -> list[str]:
    return [_NOT_WORD.sub("", w.lower()) for w in words]


def _common_prefix_len(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class PartialText:
    text: str
    stable_text: str


class StreamingTranscriber:
    """One utterance: owns its audio buffer (16 kHz float32), its partial hypotheses and its final.

    `key` identifies the utterance to the engine, so queued partials of it coalesce.
    """

    def __init__(self, engine: Transcriber, settings: AsrSettings | None = None, *, key: Hashable) -> None:
        self.engine = engine
        self.settings = settings or AsrSettings()
        self.key = key
        self.guard = HallucinationGuard(self.settings.guard)
        self._chunks: list[np.ndarray] = []
        self.samples = 0
        self._agreement = LocalAgreement()
        self._last_partial_at = 0  # utterance length (samples) at the last partial request
        self._requested = self._applied = 0  # sequence numbers of partial decodes
        self._published: PartialText | None = None
        self._early: tuple[int, int, asyncio.Future[AsrResult]] | None = None  # (end, heard, decode)

    def append(self, samples_16k: np.ndarray) -> None:
        if len(samples_16k):
            self._chunks.append(np.asarray(samples_16k, dtype=np.float32))
            self.samples += len(samples_16k)

    def audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)

    def partial_due(self) -> bool:
        """True when the utterance grew by partial_interval_ms since the last partial request."""
        s = self.settings
        interval = s.partial_interval_ms * SAMPLE_RATE_HZ / 1000
        return (s.partials and self.samples - self._last_partial_at >= interval
                and self.samples <= s.max_partial_audio_ms * SAMPLE_RATE_HZ / 1000)

    def partial(self) -> Coroutine[Any, Any, PartialText | None]:
        """Request a decode of the utterance so far (bookkeeping happens now, so partial_due() is
        False at once); await the result. It is None when there is nothing new to publish:
        superseded by a newer request, overtaken by a newer decode, dropped by the guard, or
        unchanged."""
        self._last_partial_at = self.samples
        self._requested += 1
        return self._decode_partial(self._requested, self.audio())

    async def _decode_partial(self, seq: int, audio: np.ndarray) -> PartialText | None:
        try:
            result = await self.engine.transcribe(audio, final=False, key=self.key)
        except Superseded:
            return None
        if seq <= self._applied:
            return None  # a newer decode finished first
        self._applied = seq
        reason = self.guard.reject_reason(result, rms_dbfs(audio))
        if reason is not None:
            log.debug("partial %s dropped: %s (%r)", self.key, reason, result.text)
            return None
        text, stable = self._agreement.update(result.text)
        update = PartialText(text, stable)
        if update == self._published:
            return None
        self._published = update
        return update

    def truncate(self, samples: int) -> None:
        """Keep only the first `samples` of the utterance (the VAD placed its end earlier than the
        audio already appended)."""
        self._chunks = [self.audio()[:samples]]
        self.samples = len(self._chunks[0])

    def decode_early(self, end: int, heard: int) -> asyncio.Future[AsrResult] | None:
        """The utterance will end at sample `end` if the silence under way lasts: start its final
        decode now on the first `heard` samples (≤ end; the rest is silence). Returns the new
        decode, or None when none was started (early_final off, or one for this end is running)."""
        if not self.settings.early_final or (self._early and self._early[0] == end):
            return None
        self.drop_early()
        decode = asyncio.ensure_future(self.engine.transcribe(self.audio()[:heard], final=True, key=self.key))
        self._early = (end, heard, decode)
        return decode

    def drop_early(self) -> bool:
        """Forget the early decode (speech went on); True if there was one."""
        if self._early is None:
            return False
        self._early[2].cancel()
        self._early = None
        return True

    def is_current_early(self, decode: asyncio.Future[AsrResult]) -> bool:
        return self._early is not None and self._early[2] is decode

    def early_text(self) -> str | None:
        """Text of the finished early decode as the final would give it; None when there is none
        yet, it failed, or the guard drops it (no turn to prepare a reply for)."""
        if self._early is None:
            return None
        _, heard, decode = self._early
        if not decode.done() or decode.cancelled() or decode.exception() is not None:
            return None
        result = decode.result()
        if self.guard.reject_reason(result, rms_dbfs(self.audio()[:heard])) is not None:
            return None
        return result.text or None

    async def finalize(self) -> AsrResult:
        """Decode the whole utterance (urgent), or take the early decode when it was made for an
        utterance ending exactly here. A result the guard drops comes back with text ""."""
        audio = self.audio()
        early, self._early = self._early, None
        if early is not None and early[0] == len(audio):
            result = await early[2]
        else:
            if early is not None:
                early[2].cancel()
            result = await self.engine.transcribe(audio, final=True, key=self.key)
        reason = self.guard.reject_reason(result, rms_dbfs(audio))
        if reason is not None:
            log.info("final %s dropped: %s (%r)", self.key, reason, result.text)
            return replace(result, text="")
        return result
