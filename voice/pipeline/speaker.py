"""The reply speaker: one session's agent replies, from words to paced audio frames.

A reply streams end to end: Agent items (LLM deltas, the flow's own lines, tool and state events)
-> TextChunker pieces -> TTS audio -> AudioOut frames -> Pacer (real time) -> `emit`. The first
piece is spoken while the LLM is still generating the rest. The speaker decides nothing about
turns: the turn controller (voice/pipeline/turns.py) tells it to start, hold, release, pause, resume
or cut a reply, and it reports what was heard.

- Held reply (preemptive): `start(..., held=True)` runs the reply with its output held: events are
  buffered, the pacer queues but does not send, and the Agent runs no tool. `release()` sends it all
  in order; `drop()` discards it and puts the Agent back as it was before the turn.
- `cut()` (barge-in, stop, a new turn): generation stops at the next token/sentence, queued audio
  is dropped, and the history keeps only what the client played (playback marks -> TextTimeline).
- `retract()` (the user went on speaking: the turn was not over): cut, and the Agent goes back to
  before the turn, so the continued utterance becomes one user turn.
- `pause()` / `resume()`: audio stops leaving while the controller finds out whether speech over
  the agent is a backchannel; generation goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from voice import metrics
from voice.llm.agent import Agent
from voice.llm.errors import LlmError
from voice.llm.events import Line, ToolFinished
from voice.pipeline.audio_out import AudioOut, OutCodec, OutFrame, Pacer
from voice.pipeline.events import AgentText, Interrupted, TurnMetricsReport
from voice.pipeline.turn_metrics import TurnMetrics
from voice.tts.base import TtsEngine
from voice.tts.chunker import ChunkerSettings, TextChunker
from voice.tts.normalize import speakable

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I had a problem answering that. Could you say it again?"


class ReplySpeaker:
    """See the module docstring. Use from the event loop; `emit` must not block."""

    def __init__(self, agent: Agent, tts: TtsEngine, audio_out: AudioOut, emit: Callable[[Any], None], *,
                 chunker: ChunkerSettings | None = None,
                 on_finished: Callable[[int, bool], None] | None = None):
        """`emit(event)`: where events and frames go (the controller's outbox). `on_finished(turn,
        completed)`: called when a reply ends, played to its end or not."""
        self.agent, self.tts, self.audio_out = agent, tts, audio_out
        self._emit_now = emit
        self.chunker_settings = chunker or ChunkerSettings()
        self.pacer = Pacer(self._send_paced, audio_out.sample_rate_hz)
        self._on_finished = on_finished
        #: Speak replies (False: text only, no TTS: a Realtime client that asked for text).
        self.audio = True
        self._reply: asyncio.Task[None] | None = None
        self._metrics: TurnMetrics | None = None
        self.turn = 0
        self._played_samples = 0   # from the client's playback marks
        self._marks_seen = False
        self._held: list[Any] | None = None   # events of a held reply, until release()
        self._checkpoint: Any = None           # the Agent before the current turn
        self._acted = False                    # a tool ran in the current reply
        self._generated = False                # the current reply's audio is all in the pacer
        self._paused = False
        self._stopping: set[asyncio.Task[None]] = set()  # cut replies still unwinding
        self._stopping_pacers: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ state

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.agent.history

    @property
    def speaking(self) -> bool:
        """From the start of a reply until its last frame is sent (or it was cut); a held reply is
        not speaking until released."""
        return self._held is None and self._reply is not None and not self._reply.done()

    @property
    def held(self) -> bool:
        return self._held is not None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def acted(self) -> bool:
        """A tool ran during the current (or last) reply: it cannot be taken back."""
        return self._acted

    def remaining_ms(self) -> float:
        """Audio of the current reply still to be sent (inf while it is still being generated)."""
        if not self.speaking:
            return 0.0
        if not self._generated:
            return float("inf")
        return self.pacer.queued_samples * 1000 / self.audio_out.sample_rate_hz

    def heard_ms(self) -> float:
        """How much of the current (or last) reply the client has played."""
        played = self._played_samples if self._marks_seen else self.pacer.sent_samples
        played = min(played, self.pacer.sent_samples)
        pieces = self.audio_out.timeline.pieces
        start = pieces[0].start_samples if pieces else self.pacer.sent_samples
        return max(0, played - start) * 1000 / self.audio_out.sample_rate_hz

    def playback_mark(self, played_samples: int) -> None:
        self._played_samples = max(self._played_samples, played_samples)
        self._marks_seen = True

    # ------------------------------------------------------------------ starting and ending

    def start(self, text: str | None, turn_metrics: TurnMetrics, *, held: bool = False) -> int:
        """Answer the user's `text` (already decided to be a turn; None: answer the conversation as
        it stands); returns the reply's turn number. `held`: prepare it, nothing leaves until release()."""
        self._checkpoint = self.agent.checkpoint()
        if held:
            self._held = []
            self.pacer.hold()
            self.agent.may_act.clear()
        if text is not None:
            self.agent.hear(text)
        return self._launch(self.agent.reply, turn_metrics)

    def set_output(self, codec: OutCodec, rate_hz: int) -> None:
        """A new output format (a Realtime client changed it); only between replies."""
        if self.speaking or self.held:
            raise RuntimeError("the output format cannot change while a reply is on its way")
        self.audio_out = AudioOut(codec, rate_hz)
        old, self.pacer = self.pacer, Pacer(self._send_paced, rate_hz)
        self._stopping_pacers.add(asyncio.ensure_future(old.aclose()))

    def truncate(self, played_ms: float) -> Interrupted | None:
        """The client played only `played_ms` of the last reply: cut it there if it is still going
        (the `interrupted` record), or shorten what the history keeps of it."""
        start = self.audio_out.timeline.pieces[0].start_samples if self.audio_out.timeline.pieces else 0
        played = start + round(played_ms * self.audio_out.sample_rate_hz / 1000)
        self.playback_mark(played)
        if self.speaking:
            return self.cut("client")
        heard = self.audio_out.timeline.heard_text(played)
        for message in reversed(self.agent.history):
            if message["role"] == "assistant" and message.get("content"):
                message["content"] = heard
                break
        return None

    def say(self, line: str) -> int:
        """Speak the agent's own line (greeting, re-prompt, goodbye): no user turn, no model."""
        self._checkpoint = None

        async def lines(_turn: int) -> AsyncIterator[str]:
            yield line

        return self._launch(lines, TurnMetrics(0))

    def _launch(self, items: Callable[[int], AsyncIterator[Any]], turn_metrics: TurnMetrics) -> int:
        self.turn += 1
        turn_metrics.turn = self.turn
        self._metrics = turn_metrics
        self._acted = self._generated = self._paused = False
        self._reply = asyncio.create_task(self._run_reply(self.turn, items, turn_metrics), name=f"reply-{self.turn}")
        return self.turn

    def release(self) -> None:
        """The held reply's turn happened: send what was held, in order, and let it go on."""
        if self._held is None:
            return
        held, self._held = self._held, None
        for event in held:
            self._emit_now(event)
        self.agent.may_act.set()
        self.pacer.release()

    def drop(self) -> None:
        """The held reply's turn did not happen: stop it and undo what it changed."""
        if self._held is None:
            return
        self._stop_reply()
        self.audio_out.interrupt(self.pacer.stop())
        self.pacer.release()
        self.agent.rollback(self._checkpoint)
        self.agent.may_act.set()
        self._held = self._checkpoint = None
        self.turn -= 1  # nothing was sent: the number is not used up
        metrics.REPLIES.labels("preempted").inc()

    def cut(self, reason: str) -> Interrupted | None:
        """Stop the reply now, keep what was heard; returns the `interrupted` record (None when
        nothing was speaking)."""
        if not self.speaking:
            return None
        self._stop_reply()
        sent = self.pacer.stop()
        self.pacer.release()
        self._paused = False
        played = min(self._played_samples if self._marks_seen else sent, sent)
        timeline = self.audio_out.timeline
        heard = timeline.heard_text(played)
        reply_start = timeline.pieces[0].start_samples if timeline.pieces else sent
        self.audio_out.interrupt(sent)
        self.agent.interrupted(heard)
        metrics.REPLIES.labels("interrupted").inc()
        played_ms = round(max(0, played - reply_start) * 1000 / self.audio_out.sample_rate_hz, 1)
        return Interrupted(turn=self.turn, played_ms=played_ms, heard_text=heard, reason=reason)

    def retract(self) -> Interrupted | None:
        """The user went on speaking, so the last turn was not over: cut the reply and put the
        Agent back to before that turn (its words join the continued utterance). None when it
        cannot be taken back (a tool ran, or there is no turn to undo)."""
        if not self.speaking or self._acted or self._checkpoint is None:
            return None
        cut = self.cut("continuation")
        self.agent.rollback(self._checkpoint)
        self._checkpoint = None
        return cut

    def pause(self) -> None:
        """Stop sending audio (generation goes on); resume() or cut() follows."""
        if self.speaking and not self._paused:
            self._paused = True
            self.pacer.hold()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.pacer.release()

    def _stop_reply(self) -> None:
        """Cancel the reply task; from now on it is not the speaker's (no on_finished for it)."""
        task, self._reply = self._reply, None
        if task is not None:
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    # ------------------------------------------------------------------ the reply

    def _emit(self, event: Any) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._emit_now(event)

    async def _run_reply(self, turn: int, items: Callable[[int], AsyncIterator[Any]], m: TurnMetrics) -> None:
        chunker = TextChunker(self.chunker_settings)
        full = ""
        completed = False
        try:
            try:
                # aclosing: a cut reply stops the LLM and tools at once, not at garbage collection
                async with contextlib.aclosing(items(turn)) as stream:
                    async for item in stream:
                        if not isinstance(item, str):
                            self._acted |= isinstance(item, ToolFinished)
                            self._emit(item)  # tool_call, tool_result, state_changed
                            continue
                        m.stamp("first_llm_token")
                        full += item
                        self._emit(AgentText(turn=turn, text=item, final=False))
                        # the agent's own whole sentence ("Let me check.") is said now, not when the
                        # next words come: they may be a tool call and its result (seconds) away
                        pieces = chunker.feed(item) + (chunker.flush() if isinstance(item, Line) else [])
                        for piece in pieces:
                            await self._speak(piece, m)
                for piece in chunker.flush():
                    await self._speak(piece, m)
            except LlmError as e:
                log.warning("llm failed", extra={"turn": turn, "error": str(e)})
                metrics.REPLIES.labels("failed").inc()
                full = APOLOGY
                await self._speak(APOLOGY, m)
            self.pacer.enqueue(self.audio_out.end_reply())
            self._generated = True
            self._emit(AgentText(turn=turn, text=full.strip(), final=True))
            await self.pacer.wait_idle()
            # only now: a barge-in while the end is still playing keeps just the heard part
            self.agent.finished(full.strip())
            metrics.REPLIES.labels("done").inc()
            self.agent.after_reply()
            completed = True
        finally:
            if self._on_finished is not None and self._reply is asyncio.current_task():
                self._on_finished(turn, completed)

    async def _speak(self, piece: str, m: TurnMetrics) -> None:
        """One chunker piece through TTS into the pacer; the pacer sends while we synthesize on."""
        if not self.audio:
            return
        # the voice says "six thirty pm" for "6:30 pm"; the text shown and kept stays as written
        async with contextlib.aclosing(self.tts.synthesize(speakable(piece))) as chunks:
            async for audio in chunks:
                m.stamp("first_tts_audio")
                self.pacer.enqueue(self.audio_out.push(audio, self.tts.sample_rate_hz))
        self.pacer.enqueue(self.audio_out.end_piece(piece))

    async def _send_paced(self, frame: OutFrame) -> None:
        self._emit_now(frame)
        m = self._metrics
        if m is not None and "first_audio_sent" not in m.stamps:
            m.stamp("first_audio_sent", time.monotonic())
            m.export()
            if stages := m.stages_ms():
                self._emit_now(TurnMetricsReport(turn=m.turn, stages_ms=stages))

    async def aclose(self) -> None:
        self._stop_reply()
        await asyncio.gather(*self._stopping, return_exceptions=True)
        await self.pacer.aclose()
        await self.agent.aclose()
