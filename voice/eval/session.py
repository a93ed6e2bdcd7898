"""One scenario played against the server through the binary protocol (VoiceClient).

The user is simulated as a person would be: spoken turns stream in real time from a microphone
that sends silence between them (so the server's VAD ends each turn by itself), typed turns and
keypad digits are CONTROL messages, and the next turn waits until the agent's reply has been heard
to its end — speaking earlier would be a barge-in, which a turn asks for explicitly with
`barge_in_after_ms`.

Everything the server sends is logged in the turn during which it arrived (`TurnLog`). A turn is
over when every utterance it caused has its final transcript, the newest reply has its final
agent_text, its audio has ended, and nothing has arrived for SETTLE_S. A turn that does not get
there within its timeout is marked with what was missing, and the scenario stops there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice.client import ClientOptions, ReceivedAudio, ServerError, VoiceClient
from voice.eval.scenario import Scenario, Turn
from voice.eval.speech import RATE_HZ
from voice.protocol import Flags
from voice.protocol import messages as msg

SETTLE_S = 0.8             # quiet after a reply before the next turn (a second reply may follow a tool)
EMPTY_TRANSCRIPT_S = 3.0   # after a final with no words, no reply comes: wait this long, then go on
LEAD_IN_S = 0.5            # silence the microphone sends before the first spoken turn
OPENING_WAIT_S = 2.0       # an agent that speaks first (a greeting) has started by then
FRAME_SAMPLES = RATE_HZ // 50


@dataclass
class TurnLog:
    """What happened during one turn, as received. Times are seconds since the scenario started."""

    index: int
    turn: Turn
    started_s: float = 0.0
    input_done_s: float = 0.0
    ended_s: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)   # reply audio, 16 kHz int16
    first_audio_s: float | None = None
    missing: list[str] = field(default_factory=list)       # what a timed-out turn was waiting for
    # live state, for deciding when the turn is over
    utterances: set[int] = field(default_factory=set)      # speech_started without a final yet
    finals: list[str] = field(default_factory=list)
    server_turns: list[int] = field(default_factory=list)  # reply turns seen, in order
    done_turns: set[int] = field(default_factory=set)      # ... that have their final text (or were cut)
    audio_open: bool = False
    last_activity: float = 0.0                             # monotonic

    @property
    def timed_out(self) -> bool:
        return bool(self.missing)


class Microphone:
    """Streams 20 ms PCM16 frames in real time: queued speech first, silence otherwise."""

    def __init__(self, client: VoiceClient):
        self.client = client
        self._queue: collections.deque[tuple[np.ndarray, asyncio.Future[None]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def say(self, audio: np.ndarray) -> None:
        if self._task is None or self._task.done():
            raise ConnectionError("the microphone stream is not running (connection lost?)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((audio, done))
        await done

    async def _run(self) -> None:
        try:
            await self._stream()
        except Exception as e:  # the connection went away: nobody may wait for speech forever
            while self._queue:
                _, done = self._queue.popleft()
                if not done.done():
                    done.set_exception(e)
            raise

    async def _stream(self) -> None:
        t0, n = time.monotonic(), 0
        pos = 0
        while True:
            delay = t0 + n * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2 and not self._queue:
                t0, n = time.monotonic(), 0  # the loop stalled: do not burst the silence we missed
            if self._queue:
                audio, done = self._queue[0]
                chunk = audio[pos:pos + FRAME_SAMPLES]
                pos += FRAME_SAMPLES
                if pos >= len(audio):
                    self._queue.popleft()
                    pos = 0
                    if not done.done():
                        done.set_result(None)
                chunk = np.pad(chunk, (0, FRAME_SAMPLES - len(chunk)))
            else:
                chunk = np.zeros(FRAME_SAMPLES, np.int16)
            await self.client.send_audio(chunk)
            n += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class TurnAborted(Exception):
    """A turn did not finish (timeout, or the session ended); the scenario stops there."""


class ScenarioSession:
    """Plays `scenario` on `url`; `audio` maps turn index -> the 16 kHz int16 speech to send."""

    def __init__(self, scenario: Scenario, url: str, audio: dict[int, np.ndarray], *, token: str | None = None):
        self.scenario, self.url, self.audio = scenario, url, audio
        options = {"agent": scenario.agent, **scenario.options}
        self.client = VoiceClient(url, ClientOptions(input_codec="pcm16", input_rate_hz=RATE_HZ, output_codec="pcm16",
                                                     output_rate_hz=RATE_HZ, options=options, token=token))
        self.logs: list[TurnLog] = []
        self.opening: list[dict[str, Any]] = []   # events before the first turn (state_changed, a greeting)
        self._greeting = TurnLog(-1, Turn(type="(greeting)"))  # the agent speaking first, if it does
        self._t0 = 0.0
        self._changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._mic: Microphone | None = None
        self._closed: str | None = None   # why the server's side of the session ended, once it has

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    async def run(self) -> None:
        """Connect, play every turn, end the input. Raises ClientError/OSError on connection
        problems; a turn timeout ends the scenario early (the log says what was missing)."""
        await self.client.connect()
        self._t0 = time.monotonic()
        receiver = asyncio.create_task(self._receive())
        try:
            if self.scenario.spoken:
                self._mic = Microphone(self.client)
                self._mic.start()
                await asyncio.sleep(LEAD_IN_S)
            await self._hear_greeting()
            await self._play()
        finally:
            if self._mic is not None:
                await self._mic.stop()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            await self.client.close()

    async def _hear_greeting(self) -> None:
        """A caller lets an agent that speaks first finish its greeting before talking; without
        this the first turn barges in on it and the greeting's words count as that turn's reply.
        A greeting that does not end in time is left to the first turn's checks."""
        greeting = self._greeting
        if await self._until(lambda: bool(greeting.server_turns) or greeting.audio_open, OPENING_WAIT_S):
            await self._until(lambda: self._over(greeting), self.scenario.timeout_s)

    async def _until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `done()` (checked at every received item, and every 0.1 s); False when the
        time ran out or the session ended first."""
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self._closed is not None:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.1))
        return True

    async def _play(self) -> None:
        turns = self.scenario.turns
        for i, turn in enumerate(turns):
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            try:
                await self._turn(i, turn, barge_next=nxt is not None and nxt.barge_in_after_ms is not None)
            except TurnAborted:
                return
        if self._mic is not None:
            await self._mic.stop()
        with contextlib.suppress(Exception):
            await self.client.end_input()
            await asyncio.wait_for(self._ended.wait(), 30)
        if self.logs:
            self.logs[-1].ended_s = self._now()

    async def _turn(self, i: int, turn: Turn, *, barge_next: bool) -> None:
        if turn.barge_in_after_ms is not None and self.logs and self.logs[-1].first_audio_s is not None:
            at = self.logs[-1].first_audio_s + turn.barge_in_after_ms / 1000
            await asyncio.sleep(max(0.0, at - self._now()))
        if self.logs:
            self.logs[-1].ended_s = self._now()
        log = TurnLog(i, turn, started_s=self._now(), last_activity=time.monotonic())
        self.logs.append(log)
        await self._send(i, turn)
        log.input_done_s = self._now()
        over = (lambda: self._reply_started(log)) if barge_next else (lambda: self._over(log))
        if not await self._until(over, turn.timeout_s or self.scenario.timeout_s):
            log.missing = self._missing(log, barge_next) or ["the turn to settle"]
            if self._closed is not None:
                log.missing.append(f"(the session ended: {self._closed})")
            log.ended_s = self._now()
            raise TurnAborted

    async def _send(self, i: int, turn: Turn) -> None:
        if turn.kind in ("say", "audio"):
            assert self._mic is not None
            await self._mic.say(self.audio[i])
        elif turn.kind == "type":
            await self.client.send_control(msg.TextInput(text=turn.type or ""))
        elif turn.kind == "dtmf":
            await self.client.send_control(msg.Dtmf(digits=turn.dtmf or ""))
        else:
            await asyncio.sleep((turn.silence_ms or 0) / 1000)

    # ------------------------------------------------------------ when is a turn over

    @staticmethod
    def _reply_started(log: TurnLog) -> bool:
        """The next turn barges in: this one is over as soon as its reply is audible."""
        return log.first_audio_s is not None

    @staticmethod
    def _replies_done(log: TurnLog) -> bool:
        return bool(log.server_turns) and max(log.server_turns) in log.done_turns and not log.audio_open

    def _over(self, log: TurnLog) -> bool:
        quiet = time.monotonic() - log.last_activity
        if log.utterances or quiet < SETTLE_S:
            return False
        kind = log.turn.kind
        if kind in ("say", "audio"):
            if not log.finals:
                return False
            if not any(t.strip() for t in log.finals) and not log.server_turns:
                return quiet >= EMPTY_TRANSCRIPT_S  # nothing was heard, so nothing is answered
        if kind == "silence" and not log.server_turns:
            return True
        return self._replies_done(log)

    def _missing(self, log: TurnLog, barge_next: bool) -> list[str]:
        out = []
        if log.turn.kind in ("say", "audio") and (not log.finals or log.utterances):
            out.append("transcript_final of the user's speech" if log.finals or log.utterances
                       else "speech_started / transcript_final (the server heard no speech)")
        if not log.server_turns:
            out.append("an agent reply (no agent_text, tool or metrics event)")
        elif max(log.server_turns) not in log.done_turns:
            out.append(f"the final agent_text of reply turn {max(log.server_turns)}")
        if barge_next and log.first_audio_s is None:
            out.append("the reply's first audio (the next turn barges in on it)")
        elif log.audio_open:
            out.append("the end of the reply audio (SEGMENT_END)")
        return out

    # ------------------------------------------------------------ receiving

    async def _receive(self) -> None:
        try:
            await self._receive_all()
            self._closed = "the server closed the connection"
        except Exception as e:
            self._closed = f"{type(e).__name__}: {e}"
        self._changed.set()

    async def _receive_all(self) -> None:
        async for item in self.client.messages():
            log = self.logs[-1] if self.logs else None
            if log is None:
                log = self._greeting
            if isinstance(item, ReceivedAudio):
                self._on_audio(log, item)
            elif isinstance(item, ServerError):
                self._record(log, {"type": "error", "code": item.code, "message": item.message})
            else:
                self._on_event(log, item.model_dump(exclude_none=True))
            if log is not None:
                log.last_activity = time.monotonic()
            self._changed.set()

    def _record(self, log: TurnLog | None, event: dict[str, Any]) -> None:
        event["at_s"] = self._now()
        (log.events if log is not None and log is not self._greeting else self.opening).append(event)

    def _on_audio(self, log: TurnLog | None, item: ReceivedAudio) -> None:
        if log is None:
            return
        if item.flags & Flags.SEGMENT_START:
            log.audio_open = True
            self._record(log, {"type": "audio_start"})
            if log.first_audio_s is None:
                log.first_audio_s = self._now()
        log.audio.append(item.samples)
        if item.flags & Flags.SEGMENT_END:
            log.audio_open = False
            self._record(log, {"type": "audio_end"})

    def _on_event(self, log: TurnLog | None, event: dict[str, Any]) -> None:
        self._record(log, event)
        kind = event.get("type")
        if kind == "input_ended":
            self._ended.set()
        if log is None:
            return
        if kind == "speech_started":
            log.utterances.add(event.get("utterance", -1))
        elif kind == "transcript_final":
            log.utterances.discard(event.get("utterance", -1))
            log.finals.append(event.get("text", ""))
        turn = event.get("turn")
        if isinstance(turn, int):
            if turn not in log.server_turns:
                log.server_turns.append(turn)
            if (kind == "agent_text" and event.get("final")) or kind == "interrupted":
                log.done_turns.add(turn)
                log.audio_open = log.audio_open and kind != "interrupted"
            # a newer reply means every older one is over (a typed turn cuts a reply silently)
            log.done_turns.update(t for t in log.server_turns if t < turn)
