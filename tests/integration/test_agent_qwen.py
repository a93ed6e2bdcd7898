"""The agents with the real Qwen2.5-Coder-0.5B GGUF on CPU, text turns in (temperature 0, 1 thread)."""

from __future__ import annotations

import asyncio
import re

import pytest

from voice.agents import build_agent
from voice.agents.settings import AgentsSettings
from voice.agents.store import BookingStore
from voice.llm.agent import Agent, AgentOptions
from voice.llm.base import GenerationOptions
from voice.llm.flows import load_flow
from voice.llm.tools import Toolbox, tool
from voice.models import model_path

GENERATION = GenerationOptions(max_tokens=120, temperature=0.0)


@pytest.fixture(scope="module")
def llm():
    from voice.llm.llama import LlamaCppEngine

    engine = LlamaCppEngine(model_path("qwen2.5-coder-0.5b"), n_ctx=4096, n_threads=1)
    yield engine
    engine.close()


async def say(agent: Agent, text: str, turn: int) -> tuple[str, list]:
    agent.hear(text)
    items = [item async for item in agent.reply(turn)]
    spoken = "".join(i for i in items if isinstance(i, str))
    agent.finished(spoken)
    return spoken, [i for i in items if not isinstance(i, str)]


async def agent_named(name: str, llm, tmp_path) -> Agent:
    return await build_agent(name, llm, AgentsSettings(data_dir=tmp_path), GENERATION, session_id="test-session",
                             system_prompt="You are a helpful voice assistant.")


def test_the_booking_conversation_reaches_confirmed_with_one_booking_row(llm, tmp_path):
    async def run():
        agent = await agent_named("booking", llm, tmp_path)
        lines = ["Hi, I'd like to book a table.", "Italian, please.", "We are four people.",
                 "At seven thirty in the evening.", "No.", "I want to change the time.", "Eight pm.", "Yes, please."]
        said = [await say(agent, line, n) for n, line in enumerate(lines, 1)]
        return agent, said

    agent, said = asyncio.run(run())
    assert agent.flow.name == "confirmed", [s for s, _ in said]
    assert {k: agent.flow.slots[k] for k in ("cuisine", "party_size", "time")} == {
        "cuisine": "italian", "party_size": 4, "time": "20:00"}
    rows = BookingStore(tmp_path / "bookings.sqlite3").all()
    assert [(r["cuisine"], r["party_size"], r["time"]) for r in rows] == [("italian", 4, "20:00")]
    assert all("{" not in spoken for spoken, _ in said), "JSON was spoken"


def test_a_weather_question_produces_a_correct_tool_call_and_answer(llm, tmp_path):
    spoken, events = asyncio.run(
        say(asyncio.run(agent_named("assistant", llm, tmp_path)), "What's the weather in Paris tomorrow?", 1))
    calls = [e for e in events if e.type == "tool_call"]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris", "day": "tomorrow"})]
    assert "rain" in spoken.lower() and "{" not in spoken


def test_a_general_question_is_answered_without_a_tool(llm, tmp_path):
    spoken, events = asyncio.run(
        say(asyncio.run(agent_named("assistant", llm, tmp_path)), "What is the capital of France?", 1))
    assert [e for e in events if e.type == "tool_call"] == []
    assert "paris" in spoken.lower()


def test_a_tool_that_times_out_gets_a_spoken_apology(llm):
    @tool(timeout_s=0.3, triggers=("weather",))
    async def get_weather(city: str) -> dict:
        """Weather forecast for a city.

        Args:
            city: the city name, e.g. Paris
        """
        await asyncio.sleep(5)
        return {}

    flow = load_flow("name: a\nstart: main\nidentity: You are a friendly voice assistant. Answer in one or two "
                     "short sentences.\nrules: [Use a tool when the user asks about the weather.]\n"
                     "states:\n  main:\n    tools: [get_weather]\n")
    agent = Agent(llm, generation=GENERATION, toolbox=Toolbox([get_weather]), flow=flow,
                  options=AgentOptions(filler_after_s=5))
    spoken, events = asyncio.run(say(agent, "What's the weather in Berlin?", 1))
    results = [e for e in events if e.type == "tool_result"]
    assert results and results[0].result["error"] == "timeout"
    assert re.search(r"\b(sorry|apolog|unfortunately|unable|could ?n[o']t)", spoken.lower()), spoken
    assert "{" not in spoken
