"""What every door does with its call once the handshake is done: run the turn controller, send its
output in order, read the peer until it leaves, and end cleanly — whoever ends first.

A door subclasses `CallDoor` and writes three things: `read_loop()` (its wire in -> the controller),
`write(item)` (one output event or audio frame -> its wire) and `close_call()` (the agent ended
the call: say goodbye the way its wire does). The server admits, counts and drains doors through
`busy` and `drain()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any

from voice import metrics
from voice.pipeline.audio_out import OutFrame
from voice.pipeline.turns import TurnController

log = logging.getLogger(__name__)

#: What a call recording's JSON keeps besides the audio (agent_text: the whole reply only).
RECORDED_EVENTS = frozenset({"transcript_final", "agent_text", "tool_call", "tool_result", "state_changed",
                             "turn_metrics", "interrupted", "end_of_turn", "backchannel", "call_ending"})


class CallDoor:
    """One connection's call; see the module docstring."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.started = time.monotonic()
        self.call: TurnController | None = None

    @property
    def busy(self) -> bool:
        """A turn is in flight: the user is mid-utterance, or the agent is answering."""
        return self.call is not None and self.call.busy

    def t_ms(self) -> float:
        """Time since the connection opened, ms (events carry it)."""
        return round((time.monotonic() - self.started) * 1000, 1)

    async def serve_call(self) -> str:
        """Run the open call until the peer leaves or the agent ends it; returns how it ended (a
        metrics label). Closes the call's engines-side state either way."""
        assert self.call is not None
        metrics.SESSIONS_ACTIVE.inc()
        outcome = "closed"
        tasks = [asyncio.create_task(self.call.run(), name=f"turns-{self.id}"),
                 asyncio.create_task(self._write_loop(), name=f"write-{self.id}")]
        reader = asyncio.create_task(self.read_loop(), name=f"read-{self.id}")
        ended = asyncio.create_task(self.call.ended.wait(), name=f"ended-{self.id}")
        try:
            done, _ = await asyncio.wait({reader, ended, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                outcome = reader.result()
            else:
                for task in done:
                    if task is not ended and task.exception() is not None:
                        raise task.exception()  # a bug: the server logs the session as crashed
                await self.flush_outbox()
                await self.close_call()
                outcome = "ended"
        finally:
            for task in (*tasks, reader, ended):
                task.cancel()
            await asyncio.gather(*tasks, reader, ended, return_exceptions=True)
            metrics.SESSIONS_ACTIVE.dec()
            metrics.SESSIONS_TOTAL.labels(outcome).inc()
            await self.call.aclose()
            if self.call.recorder is not None:
                await self.call.recorder.close()
        return outcome

    async def _write_loop(self) -> None:
        assert self.call is not None
        while True:
            await self._send_out(await self.call.outbox.get())

    async def flush_outbox(self) -> None:
        """Send what the call has queued (its last words, call_ending) before a goodbye."""
        assert self.call is not None
        while not self.call.outbox.empty():
            await self._send_out(self.call.outbox.get_nowait())

    async def _send_out(self, item: Any) -> None:
        await self.write(item)
        recorder = self.call.recorder if self.call is not None else None
        if recorder is None:
            return
        if isinstance(item, OutFrame):  # now: the time the client got it
            recorder.agent_audio(item.pcm, self.call.speaker.audio_out.sample_rate_hz, time.monotonic())
        elif item.type in RECORDED_EVENTS and getattr(item, "final", True):
            recorder.event(item.type, dataclasses.asdict(item))

    async def drain(self, deadline: float) -> None:
        """Server shutdown: let the in-flight turn finish (until `deadline`), then go away."""
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.busy:
            log.info("drain deadline reached with a turn in flight", extra={"session": self.id})
        with contextlib.suppress(Exception):
            await self.going_away()

    # ------------------------------------------------------------------ a door's own

    async def read_loop(self) -> str:
        raise NotImplementedError

    async def write(self, item: Any) -> None:
        raise NotImplementedError

    async def close_call(self) -> None:
        """The agent ended the call."""
        raise NotImplementedError

    async def going_away(self) -> None:
        """The server shuts down."""
        raise NotImplementedError
