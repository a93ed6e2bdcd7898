"""The turn controller: who has the turn in one call, decided in one place.

It consumes one queue of typed input events (the Listener's speech and transcript events, the
door's typed text, DTMF, playback marks and stops, its own verdicts, timers and reply ends), one at
a time, and puts typed output events (voice/pipeline/events.py) and audio frames on one queue that
the door sends. It knows no wire format. Every cut of a reply goes through `interrupt(reason)`.

What it decides, per event:
- End of turn: a silence is a candidate. With `turn.mode = "smart"` the VAD waits up to the maximum
  silence, and the end-of-turn detector (voice/asr/endpointing.py) judges the early transcript and
  the utterance's audio; a complete turn is ended after `complete_silence_ms`, an incomplete one
  is left to the maximum. `"silence"`: a fixed silence ends every turn (the VAD's).
- Preemptive reply: on the early transcript the reply starts held (nothing sent, no tool run); the
  final with the same text releases it, anything else drops it and the Agent is as before.
- Continuation: speech within `continuation.window_ms` of the end of a turn's speech, before its reply was really
  heard, retracts that reply and decodes both utterances as one (one user turn in the history).
- Barge-in and backchannels: speech over the agent pauses its audio after `min_speech_ms`; words
  that are not a backchannel (a partial transcript, or `decide_after_ms` of speech) cut the reply;
  a backchannel ("mm-hmm") or a noise with no words resumes it.
- The call: a greeting, re-prompts after silence, a goodbye after repeated silence or at the
  maximum duration, and ending the call after the agent's `hang_up` tool or a flow's end state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voice import metrics
from voice.asr.endpointing import EndOfTurnDetector, TurnDetectionSettings
from voice.asr.listener import (
    EarlyDropped,
    EarlyTranscript,
    FinalTranscript,
    Listener,
    PartialTranscript,
    SpeechStarted,
    SpeechStopped,
)
from voice.asr.whisper import SAMPLE_RATE_HZ
from voice.pipeline.events import (
    Backchannel,
    CommitInput,
    EndOfInput,
    EndOfTurn,
    InputCommitted,
    InputEnded,
    OptionsChanged,
    PlaybackMark,
    ReplyEnded,
    ReplyFinished,
    RespondRequest,
    SessionOptions,
    StopRequest,
    TimerFired,
    TruncateReply,
    TurnVerdictReady,
    UserDtmf,
    UserText,
)
from voice.pipeline.lifecycle import CallLifecycle
from voice.pipeline.options import CallOptions, effective_vad, turn_settings_in_state
from voice.pipeline.recording import CallRecorder
from voice.pipeline.settings import ContinuationSettings
from voice.pipeline.speaker import ReplySpeaker
from voice.pipeline.timers import Timers
from voice.pipeline.turn_metrics import ArrivalClock, TurnMetrics
from voice.pipeline.words import is_backchannel, words

log = logging.getLogger(__name__)

SILENCE_FOR_AUDIO_MODEL_MS = 100.0  # silence after the last word that the end-of-turn model hears


@dataclass(frozen=True)
class _Turn:
    """A user turn that ended and was answered: for continuation."""

    utterance: int
    text: str
    reply_turn: int
    speech_end: float  # monotonic: when the user's last word of it arrived


@dataclass
class _Overlap:
    """The user speaks over the agent (utterance `utterance`); `paused`: the agent's audio stopped;
    `continues`: the turn this speech may continue, if it turns out to be words."""

    utterance: int
    paused: bool = False
    continues: _Turn | None = None


class HangUp:
    """Set by the agent's hang_up tool; the controller ends the call once the reply is said."""

    def __init__(self) -> None:
        self.requested = False


class TurnController:
    """One call's turn-taking; see the module docstring. Use from the event loop."""

    def __init__(self, session_id: str, listener: Listener, speaker: ReplySpeaker, options: CallOptions, *,
                 inbox: asyncio.Queue, outbox: asyncio.Queue, detector: EndOfTurnDetector | None = None,
                 preemptive_reply: bool = True, continuation: ContinuationSettings | None = None,
                 hang_up: HangUp | None = None, recorder: CallRecorder | None = None):
        self.session_id = session_id
        self.listener, self.speaker, self.options = listener, speaker, options
        self.inbox, self.outbox = inbox, outbox
        self.detector = detector
        self.preemptive_reply = preemptive_reply
        self.continuation = continuation or ContinuationSettings()
        self.hang_up = hang_up or HangUp()
        self.recorder = recorder             # the door records what it sends; we record what we hear
        self.life = CallLifecycle(self)     # greeting, re-prompts, goodbye, the end of the call
        self._arrivals = ArrivalClock()
        self._samples_in = 0
        self._open: set[int] = set()        # utterances between speech start and final
        self._stopped_at: dict[int, float] = {}
        self._prepared: tuple[int, str, TurnMetrics] | None = None  # (utterance, early text, metrics)
        self._overlap: _Overlap | None = None
        self._last_turn: _Turn | None = None
        self._epoch = 0                      # early transcripts and drops so far (verdicts check it)
        self.timers = Timers(inbox)
        self._input_ended_pending = False
        self._echo_raised = False
        self._judges: set[asyncio.Task[None]] = set()
        self._handlers: dict[type, Callable[[Any], None]] = {
            SpeechStarted: self._on_speech_started, SpeechStopped: self._on_speech_stopped,
            PartialTranscript: self._on_partial, EarlyTranscript: self._on_early,
            EarlyDropped: self._on_early_dropped, FinalTranscript: self._on_final,
            TurnVerdictReady: self._on_verdict, ReplyFinished: self._on_reply_finished,
            TimerFired: self._on_timer, UserText: self._on_text, UserDtmf: self._on_dtmf,
            PlaybackMark: self._on_mark, StopRequest: self._on_stop, EndOfInput: self._on_end_of_input,
            OptionsChanged: self._on_options, RespondRequest: self._on_respond, CommitInput: self._on_commit,
            TruncateReply: self._on_truncate,
        }
        self._apply_turn_settings()

    # ------------------------------------------------------------------ the door's side

    async def feed_audio(self, samples_16k: np.ndarray) -> None:
        """The caller's audio (16 kHz float32 mono), as it arrives; returns once the VAD scored it."""
        if self.recorder is not None:
            self.recorder.user_audio(samples_16k, self._samples_in * 1000 / SAMPLE_RATE_HZ)
        self._samples_in += len(samples_16k)
        self._arrivals.arrived(self._samples_in * 1000 / SAMPLE_RATE_HZ)
        speaking = self.speaker.speaking
        if self.options.barge_in.echo == "raise" and speaking != self._echo_raised:
            self._echo_raised = speaking
            self._apply_turn_settings()
        if self.options.barge_in.echo == "gate" and speaking:
            samples_16k = np.zeros_like(samples_16k)  # the agent's echo must not become a turn
        await self.listener.feed(samples_16k)

    async def commit_input(self) -> None:
        """The client ends its turn itself: close the utterance in progress; `input_committed`
        follows its final."""
        await self.listener.flush()
        self.inbox.put_nowait(CommitInput())

    def replace_agent(self, agent: Any) -> bool:
        """Another agent from now on (a Realtime client that brings its own instructions and
        tools); refused (False) while a turn is in flight."""
        if self.busy:
            return False
        self.speaker.agent = agent
        return True

    async def end_of_input(self) -> None:
        """No more audio: close the utterance in progress; input_ended follows what it caused."""
        await self.listener.flush()
        self.inbox.put_nowait(EndOfInput())

    def submit(self, event: Any) -> None:
        """An input event from the door (UserText, UserDtmf, PlaybackMark, StopRequest, OptionsChanged)."""
        self.inbox.put_nowait(event)

    @property
    def ended(self) -> asyncio.Event:
        """Set when the agent has ended the call; the door closes the connection."""
        return self.life.ended

    @property
    def end_reason(self) -> str | None:
        return self.life.end_reason

    @property
    def busy(self) -> bool:
        """A turn is in flight: the user is mid-utterance, or the agent is answering."""
        return bool(self._open) or self.speaker.speaking or self.speaker.held

    async def run(self) -> None:
        """Handle input events until cancelled. A handler that fails is logged; the call goes on."""
        self.life.begin()
        while True:
            event = await self.inbox.get()
            handler = self._handlers.get(type(event))
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:  # one bad event must not end the call
                log.exception("turn controller failed on %s", type(event).__name__,
                              extra={"session": self.session_id})

    async def aclose(self) -> None:
        self.timers.cancel_all()
        for task in self._judges:
            task.cancel()
        await asyncio.gather(*self._judges, return_exceptions=True)
        await self.speaker.aclose()
        await self.listener.aclose()

    # ------------------------------------------------------------------ speech

    def _on_speech_started(self, e: SpeechStarted) -> None:
        self._open.add(e.utterance)
        self._emit(e)
        self.life.user_spoke()
        if self.speaker.speaking and self.options.barge_in.enabled:
            self._overlap = _Overlap(e.utterance, continues=self._continuable())
            waited_ms = self.options.vad.min_speech_ms  # the VAD already heard this much speech
            wait_ms = max(0.0, self.options.barge_in.min_speech_ms - waited_ms)
            # the user is likely finishing the sentence the reply jumped in on: quiet at once
            self.timers.arm("overlap", 0.0 if self._overlap.continues else wait_ms / 1000, e.utterance)

    def _on_speech_stopped(self, e: SpeechStopped) -> None:
        self._stopped_at[e.utterance] = time.monotonic()
        self._emit(e)

    def _on_partial(self, e: PartialTranscript) -> None:
        self._emit(e)
        overlap = self._overlap
        if overlap and overlap.utterance == e.utterance and overlap.paused and words(e.text) \
                and not is_backchannel(e.text, self.options.barge_in.backchannels):
            self._cut_by(overlap)  # real words over the agent: the user takes the turn

    def _on_final(self, e: FinalTranscript) -> None:
        self._close_utterance(e)
        self._emit(e)
        overlap = self._overlap if self._overlap and self._overlap.utterance == e.utterance else None
        if overlap is not None:
            self._overlap = None
        if overlap is not None and self._lets_the_reply_go_on(e.text):
            self.timers.disarm("overlap_decide")
            self.speaker.resume()
            self._emit(Backchannel(utterance=e.utterance, text=e.text, resumed=overlap.paused))
            metrics.BACKCHANNELS.inc()
            return
        if not self.options.call.answer_turns:  # the client asks for answers (Realtime create_response off)
            if overlap is not None and words(e.text):
                self.interrupt("barge_in")
        elif overlap is not None and words(e.text) and self._retract_for(overlap):
            text = f"{overlap.continues.text} {e.text}"  # the utterance is closed: join the words
            self._take_turn(text, self._turn_metrics(e.end_ms), "continuation", utterance=e.utterance)
        elif words(e.text) and self._went_on(e.utterance):
            self._drop_prepared()  # the user is already speaking again: one turn, decoded as one
        elif words(e.text):
            if not self._commit_prepared(e):
                m = self._turn_metrics(e.end_ms)
                m.stamp("final_transcript")
                self._take_turn(e.text, m, "barge_in", utterance=e.utterance)
        else:
            self._drop_prepared()
            self.life.after_quiet()
        self._maybe_input_ended()

    def _lets_the_reply_go_on(self, text: str) -> bool:
        """Speech over the reply that is a backchannel or no words at all — unless the reply is nearly
        over: then a "yeah" answers the question it ends with."""
        barge = self.options.barge_in
        return self.speaker.speaking and is_backchannel(text, barge.backchannels) and (
            not words(text) or self.speaker.remaining_ms() >= barge.answer_within_ms)

    def _close_utterance(self, e: FinalTranscript) -> None:
        self._open.discard(e.utterance)
        stopped = self._stopped_at.pop(e.utterance, None)
        if stopped is not None:
            metrics.ASR_FINAL_LATENCY.observe(time.monotonic() - stopped)
        metrics.UTTERANCES.labels("text" if e.text else "empty").inc()

    # ------------------------------------------------------------------ end of turn

    def _on_early(self, e: EarlyTranscript) -> None:
        self._epoch += 1
        if self._smart():
            # the audio model reads a long trailing silence as "done", and a word's cut tail as "not
            # done" (measured: "How many days are there in a week?" 0.08 cut at the VAD's silence
            # onset, 0.91 with 100 ms more): give it what the early decode heard, 100 ms past the onset
            upto_ms = e.end_ms - self.listener.vad_settings.speech_pad_ms + SILENCE_FOR_AUDIO_MODEL_MS
            audio = self.listener.utterance_audio(e.utterance, upto_ms)
            if audio is not None:
                task = asyncio.create_task(self._judge(e.utterance, audio, e.text, self._epoch))
                self._judges.add(task)
                task.add_done_callback(self._judges.discard)
        if (self.preemptive_reply and self.options.call.answer_turns and not self.speaker.speaking
                and not self.speaker.held):
            m = self._turn_metrics(e.end_ms)
            self._prepared = (e.utterance, e.text, m)
            self.speaker.start(e.text, m, held=True)

    async def _judge(self, utterance: int, audio: np.ndarray, text: str, epoch: int) -> None:
        assert self.detector is not None
        verdict = await self.detector.judge(audio, text)
        self.inbox.put_nowait(TurnVerdictReady(utterance, verdict, epoch))

    def _on_verdict(self, e: TurnVerdictReady) -> None:
        if e.epoch != self._epoch or e.utterance not in self._open:
            return  # the user spoke on (or the turn already ended): a verdict on old words
        v = e.verdict
        self._emit(EndOfTurn(utterance=e.utterance, complete=v.complete, probability=round(v.probability, 3),
                             wait_ms=v.wait_ms, reason=v.reason, audio_probability=v.audio_probability))
        metrics.TURN_VERDICTS.labels("complete" if v.complete else "incomplete").inc()
        if v.wait_ms >= self.listener.vad_settings.min_silence_ms:
            return  # the VAD's own silence (the maximum) ends it
        wait_ms = v.wait_ms - self.listener.silence_ms
        if wait_ms <= 0:
            self.listener.end_turn(e.utterance)
        else:
            self.timers.arm("end_turn", wait_ms / 1000, e.utterance)

    def _on_early_dropped(self, e: EarlyDropped) -> None:
        self._epoch += 1
        self.timers.disarm("end_turn")
        if self._prepared is not None and self._prepared[0] == e.utterance:
            self._drop_prepared()
            log.debug("prepared reply dropped: the user spoke on", extra={"session": self.session_id})

    def _commit_prepared(self, final: FinalTranscript) -> bool:
        """The final of a prepared utterance: release the reply if the text is the same (True)."""
        prepared, self._prepared = self._prepared, None
        if prepared is None or not self.speaker.held:
            return False
        utterance, text, m = prepared
        if utterance != final.utterance or text != final.text:
            self.speaker.drop()
            return False
        m.stamp("final_transcript")
        self.speaker.release()
        self._last_turn = _Turn(final.utterance, final.text, self.speaker.turn, m.speech_end or time.monotonic())
        return True

    def _drop_prepared(self) -> None:
        if self._prepared is not None:
            self._prepared = None
            self.speaker.drop()

    def _went_on(self, utterance: int) -> bool:
        """The final of `utterance` came while the user already speaks again: continue it."""
        later = [u for u in self._open if u > utterance]
        if not later or not self.continuation.enabled:
            return False
        return self.listener.continue_previous(max(later), utterance)

    def _continuable(self) -> _Turn | None:
        """The last turn, if speech starting now may continue it (see module doc): its reply is the
        one being said, no tool acted, and it ended within the continuation window."""
        last, c = self._last_turn, self.continuation
        if (not c.enabled or last is None or time.monotonic() - last.speech_end > c.window_ms / 1000
                or self.speaker.turn != last.reply_turn or self.speaker.acted):
            return None
        return last

    def _cut_by(self, overlap: _Overlap) -> None:
        """Words over the agent: the reply is cut. When they continue the turn it answered (and the
        user heard little of it), the reply is taken back and the two utterances become one."""
        last = overlap.continues
        if last is not None and self.listener.continue_previous(overlap.utterance, last.utterance) \
                and self._retract_for(overlap):
            log.info("turn continued: the user went on after a pause", extra={"session": self.session_id})
            return
        self.interrupt("barge_in")

    def _retract_for(self, overlap: _Overlap) -> bool:
        """Take back the reply to the turn `overlap` continues; False when it was heard too long."""
        if overlap.continues is None or self.speaker.heard_ms() > self.continuation.max_heard_ms:
            return False
        cut = self.speaker.retract()
        if cut is None:
            return False
        self._overlap = None
        self.timers.disarm("overlap")
        self.timers.disarm("overlap_decide")
        self._emit(cut)
        self._last_turn = None
        metrics.CONTINUATIONS.inc()
        return True

    # ------------------------------------------------------------------ typed input

    def _on_text(self, e: UserText) -> None:
        if e.text.strip():
            self._take_turn(e.text.strip(), TurnMetrics(0, speech_end=time.monotonic()), "text")

    def _on_dtmf(self, e: UserDtmf) -> None:
        self._take_turn(self.speaker.agent.dtmf_text(e.digits), TurnMetrics(0, speech_end=time.monotonic()), "dtmf")

    def _on_mark(self, e: PlaybackMark) -> None:
        self.speaker.playback_mark(e.played_samples)

    def _on_stop(self, e: StopRequest) -> None:
        self.interrupt(e.reason)

    def _on_end_of_input(self, _: EndOfInput) -> None:
        self._input_ended_pending = True
        self._maybe_input_ended()

    def _maybe_input_ended(self) -> None:
        if self._input_ended_pending and not self.busy:
            self._input_ended_pending = False
            self._emit(InputEnded())

    def _on_respond(self, e: RespondRequest) -> None:
        """Answer now, as the client asked: a new turn, or the conversation as it stands."""
        self._drop_prepared()
        self.interrupt("client")
        self.speaker.audio = e.audio
        self.timers.disarm("silence")
        self.speaker.start(e.text, TurnMetrics(0, speech_end=time.monotonic()))
        self._last_turn = None

    def _on_commit(self, _: CommitInput) -> None:
        self._emit(InputCommitted())

    def _on_truncate(self, e: TruncateReply) -> None:
        if (cut := self.speaker.truncate(e.played_ms)) is not None:
            metrics.INTERRUPTIONS.inc()
            self._emit(cut)

    def _on_options(self, e: OptionsChanged) -> None:
        self.options = e.options
        self._apply_turn_settings()
        self._emit(SessionOptions(options=self.options.as_dict()))

    # ------------------------------------------------------------------ replies

    def _take_turn(self, text: str, m: TurnMetrics, reason: str, *, utterance: int | None = None) -> None:
        """The user has the turn: whatever the agent was saying or preparing stops; answer `text`."""
        self._drop_prepared()
        self.interrupt(reason)
        self.timers.disarm("silence")
        turn = self.speaker.start(text, m)
        if utterance is not None:
            self._last_turn = _Turn(utterance, text, turn, m.speech_end or time.monotonic())

    def interrupt(self, reason: str) -> None:
        """The one way a reply is cut: stop it, tell the client (it flushes), keep what was heard."""
        self._overlap = None
        self.timers.disarm("overlap")
        cut = self.speaker.cut(reason)
        if cut is None:
            return
        metrics.INTERRUPTIONS.inc()
        self._emit(cut)
        for event in self.speaker.agent.state_events():  # the flow may have stepped back
            self._emit(event)

    def _on_reply_finished(self, e: ReplyFinished) -> None:
        if e.turn != self.speaker.turn:
            return
        self._emit(ReplyEnded(e.turn, e.completed))
        self._apply_turn_settings()  # the flow may be in a state with its own turn settings
        if e.completed:
            self.life.reply_done()
        self._maybe_input_ended()

    def cancel_turn(self, reason: str) -> None:
        """Nothing the agent was saying or preparing goes on (the call is ending)."""
        self._drop_prepared()
        self.interrupt(reason)

    # ------------------------------------------------------------------ timers

    def _on_timer(self, e: TimerFired) -> None:
        live, data = self.timers.take(e)
        if not live:
            return  # disarmed or re-armed since
        if e.name == "end_turn":
            self.listener.end_turn(data)
        elif e.name == "overlap":
            self._on_overlap(data)
        elif e.name == "overlap_decide":
            if self._overlap is not None and self._overlap.utterance == data and self._user_speaking():
                self._cut_by(self._overlap)
        elif e.name == "silence":
            self.life.silence()
        elif e.name == "max_call":
            self.life.max_duration()

    def _on_overlap(self, utterance: int) -> None:
        """Speech over the agent lasted min_speech_ms: pause (to find out) or cut."""
        overlap = self._overlap
        if overlap is None or overlap.utterance != utterance or not self.listener.in_speech \
                or not self.speaker.speaking:
            return
        barge = self.options.barge_in
        if not barge.resume:
            self._cut_by(overlap)
            return
        overlap.paused = True
        self.speaker.pause()
        self.timers.arm("overlap_decide", max(0.0, barge.decide_after_ms - barge.min_speech_ms) / 1000, utterance)

    # ------------------------------------------------------------------ helpers

    def _user_speaking(self) -> bool:
        """Speech now, not the silence after it (an utterance stays open until its turn ends)."""
        return self.listener.in_speech and self.listener.silence_ms == 0

    def _emit(self, event: Any) -> None:
        self.outbox.put_nowait(event)

    def _smart(self) -> bool:
        return self.detector is not None and self._turn_settings().mode == "smart"

    def _turn_settings(self) -> TurnDetectionSettings:
        """The session's end-of-turn settings, with the current flow state's overrides."""
        flow = self.speaker.agent.flow
        return turn_settings_in_state(self.options.turn, flow.state.turn if flow is not None else None)

    def _apply_turn_settings(self) -> None:
        """VAD and detector settings for now: the flow state's, the echo policy's while the agent speaks."""
        turn = self._turn_settings()
        vad = effective_vad(self.options, turn, smart=self.detector is not None, agent_speaking=self._echo_raised)
        if vad != self.listener.vad_settings:
            self.listener.update_vad(vad)
        if self.detector is not None:
            self.detector.retune(turn)

    def _turn_metrics(self, end_ms: float) -> TurnMetrics:
        """A turn's metrics, timed from the wall time its last speech sample (VAD end less the
        padding) arrived."""
        return TurnMetrics(0, speech_end=self._arrivals.time_of(end_ms - self.listener.vad_settings.speech_pad_ms))
