"""The session's ears: 16 kHz audio in, typed speech and transcript events out.

`Listener.feed()` runs the VAD and returns; Whisper decodes (partials, finals) run as background
tasks on the shared engines, so audio intake never waits for a transcript.

Events, per utterance, always in this order:
    SpeechStarted < PartialTranscript* < SpeechStopped < FinalTranscript
A partial never arrives after SpeechStopped (so never after its final).

Two events are for the agent only (never on the wire): EarlyTranscript, the final decode already
done while the end-of-turn silence runs (the FinalTranscript will carry the same text unless the
user speaks again), and EarlyDropped, the user spoke again so that early text is void. Both come
between SpeechStarted and SpeechStopped of their utterance. Finals come in utterance
order. Every utterance gets exactly one FinalTranscript; when the hallucination guard drops the
decode (noise, a cough, "thank you" said by Whisper to silence) or the decode fails, its text is
"" so clients can still close the turn.

Positions (`at_ms`, `start_ms`, `end_ms`) are ms of the session's input stream: samples since the
session's first sample / 16. SpeechStarted's `at_ms` is already moved back by the VAD padding and
is reported min_speech_ms after speech began; SpeechStopped comes min_silence_ms after it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from voice.asr.streaming import AsrSettings, PartialText, StreamingTranscriber, Transcriber
from voice.asr.vad import WINDOW_SAMPLES, SpeechStart, VadEngine, VadEvent, VadSettings, VadStream
from voice.asr.whisper import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)

SAMPLES_PER_MS = SAMPLE_RATE_HZ / 1000


@dataclass(frozen=True)
class SpeechStarted:
    type: ClassVar[str] = "speech_started"
    utterance: int
    at_ms: float


@dataclass(frozen=True)
class SpeechStopped:
    type: ClassVar[str] = "speech_stopped"
    utterance: int
    at_ms: float


@dataclass(frozen=True)
class PartialTranscript:
    """`stable_text` is the agreed prefix, never taken back; `text` = stable_text + latest guess."""

    type: ClassVar[str] = "transcript_partial"
    utterance: int
    text: str
    stable_text: str


@dataclass(frozen=True)
class FinalTranscript:
    """The whole utterance decoded; text "" when the guard dropped it."""

    type: ClassVar[str] = "transcript_final"
    utterance: int
    text: str
    start_ms: float
    end_ms: float
    language: str
    continues: int | None = None
    """The earlier utterance this one continues (merged with its audio): the user paused, the turn
    closed, and they went on before the reply was heard. Its text covers both parts."""


@dataclass(frozen=True)
class EarlyTranscript:
    """The utterance's final text if the silence now under way ends the turn (see module doc)."""

    type: ClassVar[str] = "early_transcript"
    utterance: int
    text: str
    end_ms: float


@dataclass(frozen=True)
class EarlyDropped:
    """The user went on speaking: the utterance's EarlyTranscript is void."""

    type: ClassVar[str] = "early_dropped"
    utterance: int


AsrEvent = SpeechStarted | SpeechStopped | PartialTranscript | FinalTranscript | EarlyTranscript | EarlyDropped


@dataclass
class _Utterance:
    index: int
    start_sample: int
    transcriber: StreamingTranscriber
    closed: bool = False
    continues: int | None = None
    first_sample: int | None = None  # where a merged utterance really began (start_sample is virtual)
    partial_tasks: set[asyncio.Task[PartialText | None]] = field(default_factory=set)


class Listener:
    """Per-session VAD + streaming ASR over the process-wide engines.

    One producer: call feed()/flush() from one task, never concurrently. Events go to `events`
    (unbounded; the session pipeline drains it).
    """

    def __init__(
        self,
        vad_engine: VadEngine,
        asr_engine: Transcriber,
        vad_settings: VadSettings | None = None,
        asr_settings: AsrSettings | None = None,
        *,
        events: asyncio.Queue | None = None,
        max_merged_ms: float = 25000.0,
    ) -> None:
        """`events`: where events go (the turn controller's inbox), else a queue of its own.
        `max_merged_ms`: the longest audio a continued utterance is decoded as (Whisper: 30 s)."""
        self.vad_settings = vad_settings or VadSettings()
        self.asr_settings = asr_settings or AsrSettings()
        self._asr = asr_engine
        self._vad = VadStream(vad_engine, self.vad_settings)
        self.events: asyncio.Queue = events if events is not None else asyncio.Queue()
        self._max_merged_samples = int(max_merged_ms * SAMPLES_PER_MS)
        self._keep_samples = self._pre_roll_samples(self.vad_settings)
        self._previous: tuple[int, int, int, np.ndarray] | None = None  # closed: (index, start, end, audio)
        self._history = np.zeros(0, dtype=np.float32)
        self._history_start = 0  # stream position of _history[0], in samples
        self._utterance: _Utterance | None = None
        self._next_index = 0
        self._finals: list[asyncio.Task[None]] = []
        self._closed = False

    def update_vad(self, settings: VadSettings) -> None:
        """New VAD settings from now on (session config update, echo gating); state is kept."""
        self.vad_settings = settings
        self._vad.detector.retune(settings)
        self._keep_samples = self._pre_roll_samples(settings)

    def _pre_roll_samples(self, settings: VadSettings) -> int:
        """Audio kept before the newest sample: SpeechStart points up to pad + min_speech (+ a
        window) back."""
        pre_roll_ms = settings.speech_pad_ms + settings.min_speech_ms
        return int(pre_roll_ms * SAMPLES_PER_MS) + 4 * WINDOW_SAMPLES

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and SpeechStopped (for barge-in decisions)."""
        return self._utterance is not None

    @property
    def silence_ms(self) -> float:
        """How much of the silence now under way has been heard (0 while speech goes on)."""
        return self._vad.detector.silence_heard_samples / SAMPLES_PER_MS

    def utterance_audio(self, index: int, upto_ms: float | None = None) -> np.ndarray | None:
        """The audio of utterance `index` while it is open (16 kHz float32), up to stream position
        `upto_ms` (default: all so far); None when it is not open."""
        utterance = self._utterance
        if utterance is None or utterance.index != index:
            return None
        audio = utterance.transcriber.audio()
        return audio if upto_ms is None else audio[: max(0, round(upto_ms * SAMPLES_PER_MS) - utterance.start_sample)]

    def end_turn(self, index: int) -> bool:
        """End utterance `index` now, in the silence under way (the end-of-turn detector judged it
        complete); its final follows as usual. False when it is not open or the user is speaking."""
        if self._utterance is None or self._utterance.index != index:
            return False
        end = self._vad.detector.end_now()
        if end is None:
            return False
        self._handle([end])
        return True

    def continue_previous(self, index: int, previous_index: int) -> bool:
        """Decode open utterance `index` together with `previous_index`, the utterance closed just
        before it: the user went on after a turn closed too early. The pause between them is not
        decoded (each keeps its speech padding, so ~2 × speech_pad_ms of silence joins them):
        Whisper turns a long silence inside an utterance into a sentence break or a made-up word.
        False when that is not the last closed one, or the two together are too long."""
        utterance, previous = self._utterance, self._previous
        if utterance is None or utterance.index != index or previous is None or previous[0] != previous_index:
            return False
        _, start, _end, audio = previous
        now = utterance.transcriber.audio()
        if len(audio) + len(now) > self._max_merged_samples:
            return False
        merged = StreamingTranscriber(self._asr, self.asr_settings, key=(id(self), index))
        merged.append(np.concatenate([audio, now]))
        for task in utterance.partial_tasks:
            task.cancel()
        utterance.transcriber.drop_early()
        # positions index the audio from `start_sample`, so the merged audio starts that much earlier
        self._utterance = _Utterance(index, utterance.start_sample - len(audio), merged,
                                     continues=previous[0], first_sample=start)
        return True

    async def feed(self, samples_16k: np.ndarray) -> None:
        """Take the next 16 kHz float32 mono chunk (any length). Returns once the VAD has scored it."""
        if self._closed:
            raise RuntimeError("Listener is closed")
        samples = np.asarray(samples_16k, dtype=np.float32)
        self._history = np.concatenate([self._history, samples])
        if self._utterance is not None:
            self._utterance.transcriber.append(samples)
        self._handle(await self._vad.process(samples))
        self._forget_old_history()  # only now: a long chunk may hold its own SpeechStart
        self._maybe_partial()
        self._maybe_decode_early()

    async def flush(self) -> None:
        """End of input: close the utterance in progress and wait for every pending final."""
        self._handle(self._vad.flush())
        if self._finals:
            await asyncio.gather(*self._finals, return_exceptions=True)
        self._finals = [t for t in self._finals if not t.done()]

    async def aclose(self) -> None:
        """Stop at once: cancel pending decodes; no further events."""
        self._closed = True
        tasks = list(self._finals)
        if self._utterance is not None:
            self._utterance.closed = True
            tasks += self._utterance.partial_tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -----------------------------------------------------------------------------------

    def _forget_old_history(self) -> None:
        extra = len(self._history) - self._keep_samples
        if extra > 0:
            self._history = self._history[extra:]
            self._history_start += extra

    def _handle(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                self._open(event.at_sample)
            else:
                self._close(event.at_sample)

    def _open(self, at_sample: int) -> None:
        start = max(at_sample, self._history_start)
        index, self._next_index = self._next_index, self._next_index + 1
        transcriber = StreamingTranscriber(self._asr, self.asr_settings, key=(id(self), index))
        transcriber.append(self._history[start - self._history_start :])
        self._utterance = _Utterance(index, start, transcriber)
        self.events.put_nowait(SpeechStarted(index, start / SAMPLES_PER_MS))

    def _close(self, at_sample: int) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is None:
            return
        utterance.closed = True
        for task in utterance.partial_tasks:
            task.cancel()
        utterance.transcriber.truncate(at_sample - utterance.start_sample)
        first = utterance.start_sample if utterance.first_sample is None else utterance.first_sample
        self._previous = (utterance.index, first, at_sample, utterance.transcriber.audio())
        self.events.put_nowait(SpeechStopped(utterance.index, at_sample / SAMPLES_PER_MS))
        previous = self._finals[-1] if self._finals else None
        self._finals = [t for t in self._finals if not t.done()]
        self._finals.append(asyncio.create_task(self._final(utterance, at_sample, previous)))

    def _maybe_decode_early(self) -> None:
        """In the end-of-turn silence, start the final decode before the VAD closes the turn."""
        utterance = self._utterance
        if utterance is None:
            return
        detector = self._vad.detector
        end = detector.likely_end_sample
        if end is None:
            if utterance.transcriber.drop_early():  # speech went on: the early decode is stale
                self.events.put_nowait(EarlyDropped(utterance.index))
            return
        # decode once early_tail_ms of the silence is heard (the padding past it is silence too)
        tail = min(detector.pad_samples, round(self.asr_settings.early_tail_ms * SAMPLES_PER_MS))
        if detector.silence_heard_samples < tail:
            return
        upto = min(end, self._history_start + len(self._history))
        decode = utterance.transcriber.decode_early(end - utterance.start_sample, upto - utterance.start_sample)
        if decode is not None:
            decode.add_done_callback(lambda d: self._publish_early(utterance, d, end))

    def _publish_early(self, utterance: _Utterance, decode: asyncio.Future, end_sample: int) -> None:
        """The early decode is done: tell the agent while the turn may still be going on."""
        if utterance.closed or not utterance.transcriber.is_current_early(decode):
            return  # the final follows at once, or speech went on (EarlyDropped was sent)
        if (text := utterance.transcriber.early_text()) is not None:
            self.events.put_nowait(EarlyTranscript(utterance.index, text, end_sample / SAMPLES_PER_MS))

    def _maybe_partial(self) -> None:
        utterance = self._utterance
        if utterance is None or not utterance.transcriber.partial_due():
            return
        if self._vad.detector.likely_end_sample is not None:
            return  # a silence is under way: a partial now would only hold up the early final
        backlog = getattr(self._asr, "backlog", None)
        if backlog is not None and backlog() > 0:
            return  # shed load: the engine is behind, partials are best effort and finals come first
        task = asyncio.create_task(utterance.transcriber.partial())  # books the request right now
        utterance.partial_tasks.add(task)
        task.add_done_callback(lambda t: self._publish_partial(utterance, t))

    def _publish_partial(self, utterance: _Utterance, task: asyncio.Task[PartialText | None]) -> None:
        utterance.partial_tasks.discard(task)
        if task.cancelled() or utterance.closed:
            return
        if (exc := task.exception()) is not None:  # a failed partial only costs a partial
            log.warning("partial decode of utterance %d failed: %r", utterance.index, exc)
            return
        update = task.result()
        if update is not None:
            self.events.put_nowait(PartialTranscript(utterance.index, update.text, update.stable_text))

    async def _final(
        self, utterance: _Utterance, end_sample: int, previous: asyncio.Task[None] | None
    ) -> None:
        text, language = "", getattr(self._asr, "language", None) or "en"
        try:
            result = await utterance.transcriber.finalize()
            text, language = result.text, result.language
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the turn must still close: publish an empty final
            log.warning("final decode of utterance %d failed: %r", utterance.index, exc)
        if previous is not None:  # finals in utterance order
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        first = utterance.start_sample if utterance.first_sample is None else utterance.first_sample
        start_ms, end_ms = first / SAMPLES_PER_MS, end_sample / SAMPLES_PER_MS
        self.events.put_nowait(FinalTranscript(utterance.index, text, start_ms, end_ms, language,
                                               continues=utterance.continues))
