"""Smart Turn v3.2: the audio end-of-turn model, and the process-wide engine that runs it.

The model (BSD-2, 8.7 MB ONNX, shipped inside the `pipecat-ai` wheel; voice/models.py finds it
without importing pipecat) reads the last 8 s of an utterance and returns P(turn complete). Its
input is prepared exactly as pipecat's `LocalSmartTurnAnalyzerV3` does (pipecat-ai 1.14.0,
`audio/turn/smart_turn/local_smart_turn_v3.py` + `_whisper_features.py`):

1. 16 kHz mono float32; keep the LAST 8 s (128,000 samples), or zero-pad at the START to 8 s;
2. zero-mean, unit-variance normalisation of those 8 s (transformers' `do_normalize=True`);
3. Whisper log-mel features, 80 mel bins x 800 frames of 10 ms (n_fft 400, hop 160), clamped to
   max - 8 and scaled by (x + 4) / 4: `input_features` [batch, 80, 800];
4. output `logits` [batch, 1], already a sigmoid probability.

Step 3 uses faster-whisper's numpy FeatureExtractor (equal to transformers'
`WhisperFeatureExtractor(chunk_length=8)` within 2e-5; tests/integration/test_smart_turn.py checks it).
The batch dimension is dynamic, so the `SmartTurnEngine` scores the requests of every session that
arrive together in one ONNX call on its worker thread (feature extraction runs there too: ~6 ms).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

from voice.batching import AdaptiveBatcher, BatcherStats

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE_HZ  # 128,000: the model sees the last 8 s
N_MELS = 80
N_FRAMES = 800  # 10 ms frames in 8 s
NORM_EPS = 1e-7  # transformers' zero_mean_unit_var_norm epsilon
INPUT_NAME = "input_features"


def last_window(audio_16k: np.ndarray) -> np.ndarray:
    """The last 8 s of `audio_16k` (float32), zero-padded at the start when shorter."""
    audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)[-WINDOW_SAMPLES:]
    if len(audio) < WINDOW_SAMPLES:
        audio = np.pad(audio, (WINDOW_SAMPLES - len(audio), 0))
    return audio


class SmartTurnFeatures:
    """Whisper log-mel features for Smart Turn: audio (16 kHz, any length) -> [80, 800] float32.
    Stateless after construction (the mel filters), so one instance serves every thread."""

    def __init__(self) -> None:
        self._extractor = FeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE_HZ,
                                           hop_length=160, chunk_length=WINDOW_S, n_fft=400)

    def __call__(self, audio_16k: np.ndarray) -> np.ndarray:
        window = last_window(audio_16k)
        normalised = (window - window.mean()) / np.sqrt(window.var() + NORM_EPS)
        # padding=0: the window is already 8 s; 801 STFT frames, the extractor drops the last
        features = self._extractor(normalised.astype(np.float32), padding=0)
        return np.ascontiguousarray(features, dtype=np.float32)


class SmartTurnModel:
    """One onnxruntime session on the Smart Turn v3 ONNX. Not thread-safe by contract: one caller
    at a time (the engine's worker thread)."""

    def __init__(self, model_path: Path, *, intra_op_threads: int = 1) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"Smart Turn model {model_path} not found (pip install --no-deps pipecat-ai)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        shape = inputs.get(INPUT_NAME)
        if shape is None or list(shape[1:]) != [N_MELS, N_FRAMES]:
            raise ValueError(f"{model_path}: not a Smart Turn v3 model (inputs {inputs})")
        #: True when the first dimension is symbolic: several utterances share one call
        self.batches = not isinstance(shape[0], int)
        self.features = SmartTurnFeatures()

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """features [B, 80, 800] -> P(turn complete) [B] in [0, 1]."""
        if not self.batches:
            return np.concatenate([self._run(features[b : b + 1]) for b in range(len(features))])
        return self._run(features)

    def _run(self, features: np.ndarray) -> np.ndarray:
        (probs,) = self._session.run(None, {INPUT_NAME: features.astype(np.float32, copy=False)})
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    def score(self, audios_16k: list[np.ndarray]) -> list[float | BaseException]:
        """Features + inference for a batch of utterances: P(turn complete) per utterance, or the
        error of that utterance alone (non-finite samples or output), so one session's bad audio
        never fails the others' verdicts."""
        results: list[float | BaseException] = [ValueError("audio has non-finite samples")] * len(audios_16k)
        good = [i for i, a in enumerate(audios_16k) if np.all(np.isfinite(a))]
        if not good:
            return results
        probs = self.probabilities(np.stack([self.features(audios_16k[i]) for i in good]))
        for i, p in zip(good, probs, strict=True):
            results[i] = float(p) if np.isfinite(p) else FloatingPointError(f"Smart Turn returned {p}")
        return results


class SmartTurnEngine:
    """Process-wide Smart Turn: one SmartTurnModel fed by an AdaptiveBatcher, so the end-of-turn
    questions of all sessions that arrive within `window_ms` share one ONNX call (~50 ms per
    utterance on one core, linear in the batch). Verdicts are latency-critical: always urgent."""

    def __init__(self, model_path: Path, *, window_ms: float = 2.0, max_batch: int = 8,
                 intra_op_threads: int = 1) -> None:
        self.model = SmartTurnModel(model_path, intra_op_threads=intra_op_threads)
        self._batcher: AdaptiveBatcher[np.ndarray, float] = AdaptiveBatcher(
            self._run_batch, name="smart_turn", window_ms=window_ms, max_batch=max_batch)

    async def probability(self, audio_16k: np.ndarray, *, key: Hashable | None = None) -> float:
        """P(turn complete) for one utterance (16 kHz mono float32, any length; only the last 8 s
        count). With `key` (e.g. the session id) a newer question supersedes a still-queued older
        one, whose awaiter gets batching.Superseded."""
        audio = np.asarray(audio_16k, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected non-empty mono 16 kHz samples, got shape {audio.shape}")
        return await self._batcher.submit(audio, urgent=True, key=key)

    def _run_batch(self, audios: list[np.ndarray]) -> list[float | BaseException]:
        return self.model.score(audios)

    def stats(self) -> BatcherStats:
        return self._batcher.stats()

    def close(self) -> None:
        self._batcher.close()
