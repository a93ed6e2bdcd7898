"""A scripted stand-in for the LLM, for tests of our agent logic (flows, tools, preemptive replies),
and a recorder of what a Conversation sends; tests of the model itself use the real GGUF models."""

from __future__ import annotations

import asyncio

from voice.agents import booking
from voice.agents.store import BookingStore
from voice.llm.agent import Agent, AgentOptions
from voice.llm.flows import load_flow
from voice.llm.tools import Toolbox


class ScriptedLlm:
    """Stands in for the model: each request gets the next scripted reply, streamed in small deltas."""

    name = "scripted-qwen"

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.requests: list[tuple[list[dict], object]] = []

    async def stream_chat(self, messages, options=None):
        self.requests.append((messages, options))
        text = self.replies.pop(0) if self.replies else "Okay."
        for i in range(0, len(text), 4):
            await asyncio.sleep(0)
            yield text[i:i + 4]

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass


async def say(agent: Agent, text: str, turn: int = 1) -> tuple[str, list]:
    """One whole turn, heard to the end: (spoken text, events)."""
    agent.hear(text)
    items = [item async for item in agent.reply(turn)]
    spoken = "".join(i for i in items if isinstance(i, str))
    agent.finished(spoken)
    return spoken, [i for i in items if not isinstance(i, str)]


def booking_agent(tmp_path, *replies: str, **options) -> tuple[Agent, BookingStore, ScriptedLlm]:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    llm = ScriptedLlm(*replies)
    agent = Agent(llm, name="booking", toolbox=Toolbox(booking.booking_tools(store, "session-1")),
                  flow=load_flow(booking.FLOW), options=AgentOptions(**options))
    return agent, store, llm


class Recorder:
    """Collects what a ReplySpeaker emits: audio frames and events, in order (its `emit` sink)."""

    def __init__(self):
        self.frames, self.events = [], []

    def emit(self, item):
        from voice.pipeline.audio_out import OutFrame

        (self.frames if isinstance(item, OutFrame) else self.events).append(item)

    def types(self) -> list[str]:
        return [e.type for e in self.events]
