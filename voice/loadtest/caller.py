"""One simulated caller: calls in, asks its questions out loud, listens to each reply, pauses, hangs up.

The microphone never goes quiet: between questions the caller streams silence, paced in real time
(20 ms a frame, on the call's own clock), like a phone or a browser does. A turn is:

1. speak the question (its last speech sample is where voice-to-voice starts);
2. keep streaming silence until the reply's first audio frame arrives (voice-to-voice ends there),
   at most `reply_max_s`; a reply later than `lost_after_s`, or none, is a lost turn;
3. keep listening until the reply has played out (the caller's playback clock, plus the reply
   text's end on doors that send it), so the next question never talks over the agent;
4. pause a little (±25 %) and ask the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from voice.loadtest.doors import CallFailed, CallRefused, Door, Heard, Line
from voice.loadtest.speech import FRAME_MS, Question

GREETING_WAIT_S = 20.0  # at most this long for a greeting to play before the first question
QUIET_AFTER_REPLY_S = 1.0  # doors without a reply-text end: this much silence after playback ends it
PLAYED_MARGIN_S = 0.3  # after the reply has played, before the pause starts


@dataclass
class Plan:
    turns: int = 3                # questions per call
    duration_s: float | None = None  # None: one call per caller; else call again until this has passed
    pause_s: float = 1.5          # between a reply's end and the next question (±25 %)
    lost_after_s: float = 15.0    # no reply audio within this: a lost turn
    reply_max_s: float = 45.0     # wait this long for a late reply before asking on
    retry_refused_s: float = 10.0  # duration mode: a refused caller calls again after this


@dataclass
class TurnResult:
    caller: int
    call: int
    turn: int
    question: str
    at_s: float                   # end of the question's speech, s since the test started
    v2v_ms: float | None          # last speech sample sent -> first reply audio frame received
    lost: bool
    heard: str | None = None      # the server's final transcript (doors that send it)
    reply: str | None = None
    stages_ms: dict[str, float] | None = None


@dataclass
class Results:
    """Everything the callers report; read by the progress line and the report."""

    started: float = field(default_factory=time.monotonic)
    turns: list[TurnResult] = field(default_factory=list)
    calls: int = 0
    connected: int = 0
    refused: int = 0
    refused_codes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    active: int = 0

    def now_s(self) -> float:
        return time.monotonic() - self.started


@dataclass
class _Turn:
    """What the receiver saw of the current turn."""

    end_of_speech: float | None = None
    first_audio: float | None = None
    reply_done: bool = False
    reply: str | None = None
    heard: str | None = None
    stages: dict[str, float] | None = None


class Caller:
    def __init__(self, index: int, door: Door, questions: list[Question], plan: Plan, results: Results):
        self.index = index
        self.door = door
        self.questions = questions
        self.plan = plan
        self.results = results
        self.rng = random.Random(index)
        self._asked = index  # each caller starts at a different question

    async def run(self, deadline: float | None) -> None:
        """One call, or calls until `deadline` (time.monotonic()) in duration mode."""
        call = 0
        while True:
            self.results.calls += 1
            try:
                await self._call(call)
            except CallRefused as e:
                self.results.refused += 1
                self.results.refused_codes[e.code] += 1
                if deadline is None:
                    return
                await asyncio.sleep(self.plan.retry_refused_s)
            except CallFailed as e:
                self.results.errors[e.code] += 1
            call += 1
            if deadline is None or time.monotonic() >= deadline:
                return

    async def _call(self, call: int) -> None:
        line = await self.door.call()
        self.results.connected += 1
        self.results.active += 1
        self._line, self._turn, self._closed = line, _Turn(), False
        self._failure: CallFailed | CallRefused | None = None
        self._t0, self._frames = time.monotonic(), 0
        receiver = asyncio.create_task(self._receive(line), name=f"caller-{self.index}-rx")
        try:
            await self._listen_out(1.0, GREETING_WAIT_S)  # a greeting, if the agent has one
            for turn in range(self.plan.turns):
                if self._closed:
                    break
                await self._ask(call, turn)
                await self._stream_silence(self.plan.pause_s * self.rng.uniform(0.75, 1.25))
        finally:
            self.results.active -= 1
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallFailed, CallRefused):
                await receiver
            with contextlib.suppress(Exception):  # the line may be gone already
                await line.hang_up()
        if self._failure is not None:
            raise self._failure

    async def _ask(self, call: int, turn: int) -> None:
        question = self.questions[self._asked % len(self.questions)]
        self._asked += 1
        frames = self.door.frames(question)
        end_frame = min(max(question.speech_end // self.door.frame_samples - 1, 0), len(frames) - 1)
        self._turn = state = _Turn()
        for i, frame in enumerate(frames):
            await self._send(frame)
            if i == end_frame:
                state.end_of_speech = time.monotonic()
        if state.end_of_speech is None:
            return
        eos = state.end_of_speech
        await self._stream_until(lambda: state.first_audio is not None, eos + self.plan.reply_max_s)
        if state.first_audio is not None:  # listen until it has played out
            await self._stream_until(lambda: self._reply_over(state), eos + self.plan.reply_max_s * 2)
        v2v_ms = (state.first_audio - eos) * 1000 if state.first_audio is not None else None
        lost = v2v_ms is None or v2v_ms > self.plan.lost_after_s * 1000
        if self._closed and v2v_ms is None:
            return  # the call broke: an error, counted by run(), not a turn
        self.results.turns.append(TurnResult(
            self.index, call, turn, question.text, eos - self.results.started, v2v_ms, lost,
            state.heard, state.reply, state.stages))

    def _reply_over(self, state: _Turn) -> bool:
        margin = PLAYED_MARGIN_S if state.reply_done else QUIET_AFTER_REPLY_S
        return time.monotonic() >= self._line.played_until + margin

    async def _listen_out(self, at_least_s: float, at_most_s: float) -> None:
        """Stream silence for `at_least_s`, then on while reply audio is still playing."""
        await self._stream_silence(at_least_s)
        end = time.monotonic() + at_most_s
        await self._stream_until(lambda: time.monotonic() >= self._line.played_until + QUIET_AFTER_REPLY_S, end)

    async def _stream_silence(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        await self._stream_until(lambda: False, end)

    async def _stream_until(self, done: Any, deadline: float) -> None:
        silence = self.door.silence()
        while not done() and not self._closed and time.monotonic() < deadline:
            await self._send(silence)

    async def _send(self, frame: Any) -> None:
        """One 20 ms frame, on the call's real-time clock (late frames go at once, catching up)."""
        due = self._t0 + self._frames * FRAME_MS / 1000
        self._frames += 1
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._closed:
            return
        try:
            await self._line.send(frame)
        except Exception as e:  # the connection went away: the receiver says why
            self._closed = True
            self._failure = self._failure or CallFailed("SEND_FAILED", str(e) or type(e).__name__)

    async def _receive(self, line: Line) -> None:
        try:
            async for heard in line.events():
                self._hear(heard)
        except (CallFailed, CallRefused) as e:
            self._failure = e
        except Exception as e:  # a broken line is an error of this call, not of the test
            self._failure = CallFailed("RECEIVE_FAILED", f"{type(e).__name__}: {e}")
        finally:
            self._closed = True

    def _hear(self, heard: Heard) -> None:
        state = self._turn
        if heard.kind == "audio":
            if state.end_of_speech is not None and state.first_audio is None:
                state.first_audio = time.monotonic()
        elif heard.kind == "reply_done":
            if state.end_of_speech is not None:
                state.reply_done, state.reply = True, heard.data
        elif heard.kind == "transcript":
            state.heard = heard.data
        elif heard.kind == "stages":
            state.stages = heard.data
        elif heard.kind == "error":
            self.results.errors[heard.data] += 1
