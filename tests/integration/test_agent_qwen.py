"""The agents with the real Qwen2.5-Coder-0.5B GGUF on CPU, text turns in (temperature 0, 1 thread)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import pytest

from voice.agents import build_agent
from voice.agents.settings import AgentsSettings
from voice.agents.store import BookingStore, ReminderStore
from voice.llm.agent import Agent, AgentOptions
from voice.llm.base import GenerationOptions
from voice.llm.flows import load_flow
from voice.llm.guard import SpeechGuard, claims_action
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


NOW = datetime(2026, 12, 2, 14, 5)  # a Wednesday afternoon: dates and am/pm come out the same every run


async def agent_named(name: str, llm, tmp_path) -> Agent:
    return await build_agent(name, llm, AgentsSettings(data_dir=tmp_path), GENERATION, session_id="test-session",
                             system_prompt="You are a helpful voice assistant.", clock=lambda: NOW)


def talk(llm, tmp_path, *lines: str) -> list[tuple[str, list]]:
    async def run():
        agent = await agent_named("assistant", llm, tmp_path)
        return [await say(agent, line, n) for n, line in enumerate(lines, 1)]
    return asyncio.run(run())


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


def test_an_evening_reminder_keeps_its_evening_time_and_is_stored_after_the_yes(llm, tmp_path):
    (asked, events), (done, _) = talk(llm, tmp_path, "Remind me to call my sister at 6 pm.", "Yes, please.")
    [call] = [e for e in events if e.type == "tool_call"]
    assert call.name == "add_reminder" and call.arguments["time"] == "18:00" and "sister" in call.arguments["text"]
    assert asked.endswith("?") and "6 pm" in asked and not re.search(r"\b(am|morning)\b", asked), asked
    rows = ReminderStore(tmp_path / "reminders.sqlite3").of("default")
    assert [(r["time"], r["day"]) for r in rows] == [("18:00", "2026-12-02")] and "6 pm" in done


def test_a_city_without_a_forecast_gets_an_apology_and_no_invented_weather(llm, tmp_path):
    [(spoken, _)] = talk(llm, tmp_path, "What will the weather be like in Nairobi tomorrow?")
    assert "sorry" in spoken.lower() and not re.search(r"\b(sunny|rain|cloudy|degrees)\b", spoken.lower()), spoken


def test_something_no_tool_can_do_is_refused_and_never_claimed(llm, tmp_path):
    [(spoken, events)] = talk(llm, tmp_path, "Send an email to my boss saying I'll be late today.")
    assert not [e for e in events if e.type == "tool_call"]
    assert re.search(r"\b(can't|cannot|unable|not able)\b", spoken.lower()) and not claims_action(spoken), spoken


def test_a_two_digit_multiplication_is_answered_with_the_number(llm, tmp_path):
    [(spoken, events)] = talk(llm, tmp_path, "What is seventeen times twenty-three?")
    assert "391" in spoken and not [e for e in events if e.type == "tool_call"]


@pytest.mark.parametrize("statement", ["I love hiking in the mountains on weekends.", "I just started a new job."])
def test_a_statement_gets_an_answer_that_is_not_the_statement_back(llm, tmp_path, statement):
    [(spoken, _)] = talk(llm, tmp_path, statement)
    guard = SpeechGuard(user_text=statement)
    assert spoken.strip() and all(guard.verdict(s) is None for s in re.split(r"(?<=[.!?])\s+", spoken)), spoken


async def test_the_engine_forgets_a_call_s_stored_sequences_when_its_agent_closes(llm, tmp_path):
    agent = await agent_named("assistant", llm, tmp_path)
    await say(agent, "What is the capital of France?", 1)
    assert any(key[0] == "test-session" for key in llm._store._items)
    await agent.aclose()
    assert not any(key[0] == "test-session" for key in llm._store._items)
