"""The agent's side of one session: the reply being spoken, barge-in, per-turn metrics.

A reply streams end to end: Agent text (LLM deltas, or the flow's own lines) -> TextChunker pieces
-> TTS audio -> AudioOut frames -> Pacer (real time). The first piece is spoken while the LLM is
still generating the rest. The Agent (voice/llm/agent.py) owns the history, the dialogue flow and
the tools; its tool_call / tool_result / state_changed events go out as EVENT frames in order.

Barge-in: `interrupt()` cancels the reply task (which stops LLM and TTS generation at their next
step), drops every queued frame, tells the client to flush its buffer, and stores in the history
only the part of the reply the user actually heard (client playback marks -> TextTimeline); the
Agent also undoes flow moves the user never heard about.

Preemptive reply: the ASR knows the final text of a turn while the end-of-turn silence is still
running (its early decode). `prepare()` starts the reply then, with its output held: events are
buffered, the pacer queues but does not send, and the Agent runs no tool. `commit()` (the final
transcript came, same text) releases it all in order, so the LLM and TTS work done during the
silence comes off the reaction time; `cancel_prepared()` (the user spoke on) drops the reply and
restores the Agent as it was, as if nothing had been prepared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from voice import metrics
from voice.llm.agent import Agent
from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.errors import LlmError
from voice.pipeline.audio_out import AudioOut, OutFrame, Pacer
from voice.pipeline.turn_metrics import TurnMetrics
from voice.protocol import messages as msg
from voice.tts.base import TtsEngine
from voice.tts.chunker import ChunkerSettings, TextChunker

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I had a problem answering that. Could you say it again?"


class BargeInSettings(BaseModel):
    """How the user may interrupt the agent. Per-session overridable (HELLO options "barge_in")."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_speech_ms: float = Field(300.0, ge=0)   # speech this long while the agent talks interrupts it
    #: Clients without echo cancellation (CLI on speakers, phones) hear the agent in their mic:
    #: "aec" = the client cancels echo (browsers); "raise" = higher VAD threshold while the agent
    #: speaks; "gate" = ignore the mic while the agent speaks (no barge-in).
    echo: str = Field("aec", pattern="^(aec|raise|gate)$")
    raised_threshold: float = Field(0.85, gt=0, lt=1)


class Conversation:
    """History and replies of one session; see the module docstring. Use from the event loop."""

    def __init__(self, llm: LlmEngine, tts: TtsEngine, audio_out: AudioOut,
                 send_frame: Callable[[OutFrame], Awaitable[None]],
                 emit: Callable[[Any], Awaitable[None]], *, system_prompt: str,
                 generation: GenerationOptions, chunker: ChunkerSettings | None = None,
                 agent: Agent | None = None):
        """`agent` None: a plain chat agent (no tools, no flow) with `system_prompt`."""
        self.llm, self.tts, self.audio_out = llm, tts, audio_out
        self.emit = emit
        self.agent = agent or Agent(llm, system_prompt=system_prompt, generation=generation)
        self.chunker_settings = chunker or ChunkerSettings()
        self.pacer = Pacer(self._send_paced, audio_out.sample_rate_hz)
        self._send_frame = send_frame
        self._reply: asyncio.Task[None] | None = None
        self._metrics: TurnMetrics | None = None
        self._turn = 0
        self._played_samples = 0   # from the client's playback marks
        self._marks_seen = False
        self._held: list[Any] | None = None   # events of a prepared reply, until commit()
        self._checkpoint: Any = None           # the Agent before the prepared turn
        self.on_speaking_changed: Callable[[bool], None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.agent.history

    @property
    def speaking(self) -> bool:
        """True from the start of a reply until its last frame has been sent (or it was cut); a
        prepared reply is not speaking until committed."""
        return self._held is None and self._reply is not None and not self._reply.done()

    @property
    def prepared(self) -> bool:
        """A reply is prepared (see the module docstring) and waits for commit or cancel."""
        return self._held is not None

    def playback_mark(self, played_samples: int) -> None:
        self._played_samples = max(self._played_samples, played_samples)
        self._marks_seen = True

    # ------------------------------------------------------------------ turns

    def user_said(self, text: str, turn_metrics: TurnMetrics) -> None:
        """A user turn (final transcript or typed text): answer it. A reply still running is cut."""
        self.cancel_prepared()
        if self.speaking:
            self._cut_reply()
        self._start_reply(text, turn_metrics)
        self._set_speaking(True)

    def prepare(self, text: str, turn_metrics: TurnMetrics) -> None:
        """Start answering `text` before the turn is confirmed; nothing leaves until commit()."""
        if self._reply is not None and not self._reply.done():
            return  # the agent is talking (or already preparing): that is barge-in territory
        self._checkpoint = self.agent.checkpoint()
        self._held = []
        self.pacer.hold()
        self.agent.may_act.clear()
        self._start_reply(text, turn_metrics)

    async def commit(self) -> None:
        """The prepared turn happened: send what was held, in order, and let the reply go on."""
        if self._held is None:
            return
        held = self._held
        while held:
            await self.emit(held.pop(0))  # the reply may add more meanwhile: same list, same order
            if self._held is not held:
                return  # cancelled while we were sending (a typed turn came in)
        self._held = self._checkpoint = None
        self.agent.may_act.set()
        self.pacer.release()
        if self.speaking:
            self._set_speaking(True)

    def cancel_prepared(self) -> None:
        """The prepared turn did not happen: drop the reply and undo what it changed."""
        if self._held is None:
            return
        assert self._reply is not None
        self._reply.cancel()
        self._reply = None
        self.audio_out.interrupt(self.pacer.stop())
        self.pacer.release()
        self.agent.rollback(self._checkpoint)
        self.agent.may_act.set()
        self._held = self._checkpoint = None
        self._turn -= 1
        metrics.REPLIES.labels("preempted").inc()

    def _start_reply(self, text: str, turn_metrics: TurnMetrics) -> None:
        self._turn += 1
        turn_metrics.turn = self._turn
        self._metrics = turn_metrics
        self.agent.hear(text)
        self._reply = asyncio.create_task(self._run_reply(self._turn, turn_metrics), name=f"reply-{self._turn}")

    async def _emit(self, event: Any) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            await self.emit(event)

    def dtmf(self, digits: str, turn_metrics: TurnMetrics) -> None:
        """Keypad digits are a user turn: the agent says what they mean in the current state."""
        self.user_said(self.agent.dtmf_text(digits), turn_metrics)

    async def interrupt(self) -> None:
        """Barge-in or an interrupt CONTROL: stop talking now and keep only what was heard."""
        if not self.speaking:
            return
        turn = self._turn
        played_ms, heard = self._cut_reply()
        metrics.INTERRUPTIONS.inc()
        await self.emit(msg.Interrupted(turn=turn, played_ms=played_ms, heard_text=heard))
        for event in self.agent.state_events():  # the flow may have stepped back
            await self.emit(event)

    def _cut_reply(self) -> tuple[float, str]:
        """Cancel generation, drop queued audio, fix the history; returns (ms of the reply heard,
        the text heard)."""
        assert self._reply is not None
        self._reply.cancel()
        sent = self.pacer.stop()
        played = self._played_samples if self._marks_seen else sent
        played = min(played, sent)
        timeline = self.audio_out.timeline
        heard = timeline.heard_text(played)
        reply_start = timeline.pieces[0].start_samples if timeline.pieces else sent
        self.audio_out.interrupt(sent)
        self.agent.interrupted(heard)
        metrics.REPLIES.labels("interrupted").inc()
        self._set_speaking(False)
        return round(max(0, played - reply_start) * 1000 / self.audio_out.sample_rate_hz, 1), heard

    async def _run_reply(self, turn: int, m: TurnMetrics) -> None:
        chunker = TextChunker(self.chunker_settings)
        full = ""
        try:
            try:
                # aclosing: a cancelled reply stops the LLM and tools at once, not at garbage collection
                async with contextlib.aclosing(self.agent.reply(turn)) as items:
                    async for item in items:
                        if not isinstance(item, str):
                            await self._emit(item)  # tool_call, tool_result, state_changed
                            continue
                        m.stamp("first_llm_token")
                        full += item
                        await self._emit(msg.AgentText(turn=turn, text=item, final=False))
                        for piece in chunker.feed(item):
                            await self._speak(piece, m)
                for piece in chunker.flush():
                    await self._speak(piece, m)
            except LlmError as e:
                log.warning("llm failed", extra={"turn": turn, "error": str(e)})
                metrics.REPLIES.labels("failed").inc()
                full = APOLOGY
                await self._speak(APOLOGY, m)
            self.pacer.enqueue(self.audio_out.end_reply())
            await self._emit(msg.AgentText(turn=turn, text=full.strip(), final=True))
            await self.pacer.wait_idle()
            # only now: a barge-in while the end is still playing keeps just the heard part
            self.agent.finished(full.strip())
            metrics.REPLIES.labels("done").inc()
            self.agent.after_reply()
        finally:
            if self._reply is asyncio.current_task():
                self._set_speaking(False)

    async def _speak(self, piece: str, m: TurnMetrics) -> None:
        """One chunker piece through TTS into the pacer; the pacer sends while we synthesize on."""
        async with contextlib.aclosing(self.tts.synthesize(piece)) as chunks:
            async for audio in chunks:
                m.stamp("first_tts_audio")
                self.pacer.enqueue(self.audio_out.push(audio, self.tts.sample_rate_hz))
        self.pacer.enqueue(self.audio_out.end_piece(piece))

    async def _send_paced(self, frame: OutFrame) -> None:
        await self._send_frame(frame)
        m = self._metrics
        if m is not None and "first_audio_sent" not in m.stamps:
            m.stamp("first_audio_sent", time.monotonic())
            m.export()
            await self.emit(msg.TurnMetrics(turn=m.turn, stages_ms=m.stages_ms()))

    def _set_speaking(self, speaking: bool) -> None:
        if self.on_speaking_changed is not None:
            self.on_speaking_changed(speaking)

    async def aclose(self) -> None:
        if self._reply is not None:
            self._reply.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reply
        await self.pacer.aclose()
        await self.agent.aclose()
