"""Piper TTS engine: the packaged neural voice (VITS, ONNX Runtime on CPU), shared by all sessions.

Piper synthesizes a sentence at a time and is not batched, so the unit of work on the worker
thread is one sentence: a session's reply is phonemized, then each sentence is a separate request
to the engine's AdaptiveBatcher (max_batch 1). That gives three things for free:
- sessions interleave sentence by sentence, and a reply's first sentence is urgent, so one long
  reply never holds back another session's first audio;
- cancelling a synthesis drops its queued sentences at once (only the sentence already running on
  the worker finishes, and its audio is thrown away);
- inference and espeak phonemization (a global, not thread-safe C library) stay on one thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from voice.batching import AdaptiveBatcher, BatcherStats

log = logging.getLogger(__name__)

_Job = Callable[[], Any]


class PiperEngine:
    """Process-wide Piper voice with one worker thread.

    `intra_op_threads`: ONNX Runtime threads for one inference (1 keeps a 2-core box responsive
    for ASR and the LLM; Piper's own default would use every core). `length_scale`: speaking
    rate, > 1 slower, < 1 faster; None keeps the voice's configured rate.
    """

    def __init__(
        self,
        model_path: str | Path,
        config_path: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
        length_scale: float | None = None,
    ) -> None:
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        if not model_path.is_file():
            raise FileNotFoundError(f"Piper voice {model_path} does not exist")
        if not config_path.is_file():
            raise FileNotFoundError(f"Piper voice config {config_path} does not exist")
        with open(config_path, encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # No ONNX Runtime memory arena: it keeps the peak of the longest sentence ever synthesized
        # for good (measured after one 60-word sentence: +350 MB held with it, +80 MB without;
        # synthesis time the same, docs/operations.md "Memory")
        options.enable_cpu_mem_arena = False
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(session=session, config=config)
        self._length_scale = length_scale
        self.sample_rate_hz: int = config.sample_rate
        #: Speaker names of a multi-speaker voice (empty for a single-speaker one such as joe).
        self.voices: tuple[str, ...] = tuple(config.speaker_id_map)
        self._batcher: AdaptiveBatcher[_Job, Any] = AdaptiveBatcher(
            _run_jobs, name="tts-piper", window_ms=0.0, max_batch=1)
        log.info("piper: %s, %d Hz, %d intra-op thread(s)", model_path.name, self.sample_rate_hz,
                 intra_op_threads)

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[np.ndarray]:
        """float32 mono audio at `sample_rate_hz`, one chunk per sentence of `text`.

        The next sentence is requested while the consumer handles the current one, so the worker
        never waits for the consumer. Stopping iteration (aclose or cancellation) cancels it.
        """
        syn_config = self._synthesis_config(voice)
        sentences: list[list[str]] = await self._batcher.submit(
            lambda: self._voice.phonemize(text), urgent=True)
        sentences = [s for s in sentences if s]
        pending: asyncio.Task[np.ndarray] | None = None
        try:
            for index, phonemes in enumerate(sentences):
                if pending is None:  # the first sentence: first audio, ahead of bulk work
                    pending = self._submit(phonemes, syn_config, urgent=True)
                audio = await pending
                pending = None
                if index + 1 < len(sentences):
                    pending = self._submit(sentences[index + 1], syn_config, urgent=False)
                yield audio
        finally:
            if pending is not None:
                pending.cancel()
                # A request that already failed (engine closing) must not log "never retrieved".
                pending.add_done_callback(lambda t: t.cancelled() or t.exception())

    def stats(self) -> BatcherStats:
        return self._batcher.stats()

    def close(self) -> None:
        """Stop the worker after the sentence it is running; queued sentences get BatcherClosed."""
        self._batcher.close()

    def _submit(self, phonemes: list[str], syn_config: SynthesisConfig, *, urgent: bool) -> asyncio.Task[np.ndarray]:
        return asyncio.ensure_future(
            self._batcher.submit(lambda: self._speak(phonemes, syn_config), urgent=urgent))

    def _speak(self, phonemes: list[str], syn_config: SynthesisConfig) -> np.ndarray:
        """One sentence's phonemes -> float32 audio in [-1, 1] (worker thread)."""
        ids = self._voice.phonemes_to_ids(phonemes)
        audio = np.asarray(self._voice.phoneme_ids_to_audio(ids, syn_config), dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        # Piper normalizes each sentence to full scale; 0.9 leaves headroom for the resampler.
        audio = audio * (0.9 / peak) if peak > 1e-8 else np.zeros_like(audio)
        return audio.astype(np.float32)

    def _synthesis_config(self, voice: str | None) -> SynthesisConfig:
        speaker_id = None
        if voice is not None:
            if voice not in self._voice.config.speaker_id_map:
                known = ", ".join(self.voices) or "none: this voice has a single speaker"
                raise ValueError(f"Piper voice has no speaker {voice!r} (speakers: {known})")
            speaker_id = self._voice.config.speaker_id_map[voice]
        return SynthesisConfig(speaker_id=speaker_id, length_scale=self._length_scale)


def _run_jobs(jobs: list[_Job]) -> list[Any]:
    """Batcher callback: run each job, an exception becomes that job's result."""
    results: list[Any] = []
    for job in jobs:
        try:
            results.append(job())
        except Exception as exc:  # goes to that request's awaiter only
            results.append(exc)
    return results
