"""Silero voice activity detection: the ONNX model, a process-wide engine, and a per-session stream.

Audio is 16 kHz mono float32. The model scores 512-sample windows (32 ms), each preceded by the
last 64 samples of the window before it (context), and carries an LSTM state per stream.

- `SileroVad`: the onnxruntime session. Two ONNX layouts exist:
  * "state" (silero_vad.onnx from the `silero-vad` wheel: input [B, 576], state [2, B, 128], sr):
    rows are independent streams, so windows from every session go in ONE call;
  * "sequence" (faster-whisper's bundled silero_vad_v6.onnx: input [T, 576], h/c [1, 1, 128]):
    rows are consecutive windows of ONE stream, so a batch is run as one call per stream.
- `VadEngine`: SileroVad + AdaptiveBatcher; inference runs on the batcher's worker thread.
- `VadDetector`: pure state machine, window probabilities -> SpeechStart / SpeechEnd (in samples).
- `VadStream`: one per session; chunks arbitrary input into windows and keeps context and state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, model_validator

from voice.batching import AdaptiveBatcher, BatcherStats

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 512  # 32 ms: the 16 kHz model's fixed window
CONTEXT_SAMPLES = 64  # tail of the previous window, prepended to each input
STATE_SHAPE = (2, 128)  # per-stream LSTM state (h, c)
HYSTERESIS = 0.15  # default gap between the speech and the non-speech thresholds


class VadSettings(BaseModel):
    """Turn-taking knobs of the detector; times in ms of input audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """A window with speech probability ≥ threshold counts as speech."""
    neg_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Speech ends only below this (hysteresis); None means threshold − 0.15 (at least 0.01)."""
    min_speech_ms: float = Field(250.0, ge=0.0, le=5000.0)
    """Speech must last this long before SpeechStart is reported; shorter blips are ignored."""
    min_silence_ms: float = Field(500.0, ge=0.0, le=10000.0)
    """End-of-turn silence: speech ends after this much continuous non-speech."""
    speech_pad_ms: float = Field(200.0, ge=0.0, le=2000.0)
    """Reported segments are widened by this much on each side, so word edges are not cut."""

    @model_validator(mode="after")
    def _neg_below_threshold(self) -> VadSettings:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError(f"neg_threshold {self.neg_threshold} must be ≤ threshold {self.threshold}")
        return self

    @property
    def effective_neg_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - HYSTERESIS, 0.01)


# -- the model -------------------------------------------------------------------------------------


class SileroVad:
    """One onnxruntime session on a Silero 16 kHz model. Not thread-safe: one caller at a time
    (the VadEngine's worker thread)."""

    def __init__(self, model_path: Path, *, intra_op_threads: int = 1) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"Silero VAD model {model_path} not found "
                                    "(pip install faster-whisper, or silero-vad --no-deps)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in self._session.get_inputs()}
        if {"input", "state"} <= names:
            self.layout = "state"
        elif {"input", "h", "c"} <= names:
            self.layout = "sequence"
        else:
            raise ValueError(f"{model_path}: unknown Silero VAD layout (inputs {sorted(names)})")
        self._needs_sr = "sr" in names
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)

    @property
    def batches_streams(self) -> bool:
        """True when windows of different streams can share one ONNX call."""
        return self.layout == "state"

    @staticmethod
    def initial_state() -> np.ndarray:
        return np.zeros(STATE_SHAPE, dtype=np.float32)

    def infer(self, inputs: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window for each of B streams.

        inputs: [B, 576] float32 (64 context + 512 new samples); states: [B, 2, 128].
        Returns (speech probabilities [B], new states [B, 2, 128]).
        """
        if self.layout == "state":
            return self._infer_state(inputs, states)
        outs = [self._infer_sequence(inputs[b : b + 1], states[b]) for b in range(len(inputs))]
        return np.array([p for p, _ in outs], dtype=np.float32), np.stack([s for _, s in outs])

    def _infer_state(self, inputs: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"input": inputs, "state": np.ascontiguousarray(states.transpose(1, 0, 2))}
        if self._needs_sr:
            feeds["sr"] = self._sr
        probs, new_state = self._session.run(None, feeds)
        return probs.reshape(-1), new_state.transpose(1, 0, 2)

    def _infer_sequence(self, inputs: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        feeds = {"input": inputs, "h": state[0].reshape(1, 1, -1), "c": state[1].reshape(1, 1, -1)}
        probs, h, c = self._session.run(None, feeds)
        return float(probs.reshape(-1)[-1]), np.stack([h.reshape(-1), c.reshape(-1)])


class VadEngine:
    """Process-wide VAD: one SileroVad fed by an AdaptiveBatcher, so the windows of all sessions
    that arrive within `window_ms` are scored in one ONNX call on the batcher's thread."""

    def __init__(
        self,
        model_path: Path,
        *,
        window_ms: float = 2.0,
        max_batch: int = 64,
        target_latency_ms: float | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        self.model = SileroVad(model_path, intra_op_threads=intra_op_threads)
        self._batcher: AdaptiveBatcher[tuple[np.ndarray, np.ndarray], tuple[float, np.ndarray]] = (
            AdaptiveBatcher(self._run_batch, name="vad", window_ms=window_ms, max_batch=max_batch,
                            target_latency_ms=target_latency_ms, shares_cpu=False)
        )

    async def infer(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """Score one 576-sample input (context + window) for one stream; returns (prob, new state)."""
        return await self._batcher.submit((window, state))

    def _run_batch(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
        inputs = np.stack([w for w, _ in items]).astype(np.float32, copy=False)
        states = np.stack([s for _, s in items]).astype(np.float32, copy=False)
        probs, new_states = self.model.infer(inputs, states)
        return [(float(p), s.copy()) for p, s in zip(probs, new_states, strict=True)]

    def stats(self) -> BatcherStats:
        return self._batcher.stats()

    def close(self) -> None:
        self._batcher.close()


# -- the detector ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at `at_sample` (already moved back by speech_pad_ms), in stream samples."""

    at_sample: int


@dataclass(frozen=True)
class SpeechEnd:
    """Speech ended at `at_sample` (already moved on by speech_pad_ms), in stream samples."""

    at_sample: int


VadEvent = SpeechStart | SpeechEnd


class VadDetector:
    """Turns one speech probability per window into SpeechStart / SpeechEnd events.

    States: silence -> onset (p ≥ threshold, waiting for min_speech_ms) -> speech -> offset
    (p < neg_threshold, waiting for min_silence_ms) -> silence. An onset that drops below
    neg_threshold before min_speech_ms is discarded; an offset that rises to ≥ threshold goes back
    to speech. Positions are sample offsets from the stream start; segments never overlap.
    """

    def __init__(self, settings: VadSettings, *, window_samples: int = WINDOW_SAMPLES,
                 sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.retune(settings)
        self.window_samples = window_samples
        self.position_samples = 0  # end of the audio scored so far
        self.state = "silence"
        self._onset_at = 0
        self._silence_at = 0
        self._last_end = 0

    def retune(self, settings: VadSettings) -> None:
        """Apply new thresholds and durations mid-stream, keeping the current state (used to raise
        the threshold while the agent speaks on clients without echo cancellation)."""
        per_ms = self.sample_rate_hz / 1000.0
        self.threshold = settings.threshold
        self.neg_threshold = settings.effective_neg_threshold
        self.min_speech_samples = round(settings.min_speech_ms * per_ms)
        self.min_silence_samples = round(settings.min_silence_ms * per_ms)
        self.pad_samples = round(settings.speech_pad_ms * per_ms)

    @property
    def in_speech(self) -> bool:
        """True between a reported SpeechStart and its SpeechEnd."""
        return self.state in ("speech", "offset")

    @property
    def likely_end_sample(self) -> int | None:
        """Where the segment will end if the silence now under way lasts min_silence_ms (the
        padding included). None while speech goes on."""
        return self._silence_at + self.pad_samples if self.state == "offset" else None

    @property
    def silence_heard_samples(self) -> int:
        """How much of the silence now under way has been scored (0 while speech goes on)."""
        return self.position_samples - self._silence_at if self.state == "offset" else 0

    def push(self, prob: float) -> VadEvent | None:
        """Feed the probability of the next window."""
        start = self.position_samples
        self.position_samples += self.window_samples
        if self.state == "silence" and prob >= self.threshold:
            self.state, self._onset_at = "onset", start
        if self.state == "onset":
            return self._onset(prob)
        if self.state == "speech" and prob < self.neg_threshold:
            self.state, self._silence_at = "offset", start
        if self.state == "offset":
            return self._offset(prob)
        return None

    def flush(self) -> SpeechEnd | None:
        """End of input: close a speech segment in progress (an unconfirmed onset is dropped)."""
        state, self.state = self.state, "silence"
        if state == "speech":
            return self._end(self.position_samples)
        if state == "offset":
            return self._end(min(self._silence_at + self.pad_samples, self.position_samples))
        return None

    def end_now(self) -> SpeechEnd | None:
        """End the segment in the silence now under way, without waiting for min_silence_ms (the
        end-of-turn detector judged the turn complete). None unless a silence is under way."""
        if self.state != "offset":
            return None
        self.state = "silence"
        return self._end(min(self._silence_at + self.pad_samples, self.position_samples))

    def _onset(self, prob: float) -> SpeechStart | None:
        if prob < self.neg_threshold:
            self.state = "silence"
            return None
        if self.position_samples - self._onset_at < self.min_speech_samples:
            return None
        self.state = "speech"
        return SpeechStart(max(self._onset_at - self.pad_samples, self._last_end, 0))

    def _offset(self, prob: float) -> SpeechEnd | None:
        if prob >= self.threshold:
            self.state = "speech"
            return None
        if self.position_samples - self._silence_at < self.min_silence_samples:
            return None
        self.state = "silence"
        return self._end(min(self._silence_at + self.pad_samples, self.position_samples))

    def _end(self, at_sample: int) -> SpeechEnd:
        self._last_end = at_sample
        return SpeechEnd(at_sample)


# -- the per-session stream ------------------------------------------------------------------------


class VadStream:
    """One session's VAD: cuts 16 kHz float32 input of any length into 512-sample windows, keeps
    the 64-sample context and the model state, and scores windows through the shared engine."""

    def __init__(self, engine: VadEngine, settings: VadSettings | None = None) -> None:
        self.engine = engine
        self.detector = VadDetector(settings or VadSettings())
        self._pending = np.zeros(0, dtype=np.float32)  # < one window, not yet scored
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._state = SileroVad.initial_state()
        self.last_probability = 0.0

    async def process(self, samples_16k: np.ndarray) -> list[VadEvent]:
        """Score every complete window now available; returns the events they caused, in order."""
        samples = np.asarray(samples_16k, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {samples.shape}")
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        events: list[VadEvent] = []
        offset = 0
        while len(buf) - offset >= WINDOW_SAMPLES:
            window = buf[offset : offset + WINDOW_SAMPLES]
            offset += WINDOW_SAMPLES
            prob, self._state = await self.engine.infer(np.concatenate([self._context, window]), self._state)
            self._context = window[-CONTEXT_SAMPLES:].copy()
            self.last_probability = prob
            event = self.detector.push(prob)
            if event is not None:
                events.append(event)
        self._pending = buf[offset:].copy()
        return events

    def flush(self) -> list[VadEvent]:
        """End of input: close speech in progress. The unscored tail (< 32 ms) is ignored."""
        event = self.detector.flush()
        return [event] if event is not None else []
