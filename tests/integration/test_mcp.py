"""MCP tools over stdio: a real MCP server (tests/mcp_server_example.py, official SDK) started by the test."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from voice.llm.agent import Agent
from voice.llm.mcp_tools import McpServer, connect_all
from voice.llm.tools import Toolbox, ToolCall, run_tool

EXAMPLE = str(Path(__file__).resolve().parents[1] / "mcp_server_example.py")


def weather_server(**kw) -> McpServer:
    return McpServer("weather", sys.executable, [EXAMPLE], **kw)


@pytest.fixture
async def weather_tools():
    tools, connections = await connect_all([weather_server(timeout_s=1.0)])
    yield {t.name: t for t in tools}
    for conn in connections:
        await conn.aclose()


async def test_the_servers_tools_are_listed_under_its_namespace(weather_tools):
    assert set(weather_tools) == {"weather.get_forecast", "weather.slow_alerts"}
    forecast = weather_tools["weather.get_forecast"]
    assert forecast.description.startswith("Weather forecast")
    assert forecast.parameters["required"] == ["city"]


async def test_a_call_returns_the_servers_result(weather_tools):
    outcome = await run_tool(weather_tools["weather.get_forecast"],
                             ToolCall("1", "weather.get_forecast", {"city": "Oslo", "days": 2}))
    assert outcome.ok and outcome.result == {"city": "Oslo", "days": 2, "sky": "snow", "celsius": -3}


async def test_arguments_are_checked_against_the_published_schema(weather_tools):
    outcome = await run_tool(weather_tools["weather.get_forecast"], ToolCall("1", "weather.get_forecast", {}))
    assert outcome.result["error"] == "invalid_arguments" and "city" in outcome.result["message"]


async def test_a_tool_error_from_the_server_is_an_error_result(weather_tools):
    outcome = await run_tool(weather_tools["weather.get_forecast"],
                             ToolCall("1", "weather.get_forecast", {"city": "Atlantis"}))
    assert outcome.result["error"] == "failed" and outcome.result["message"].endswith("no forecast for Atlantis")


async def test_a_slow_server_tool_times_out(weather_tools):
    outcome = await run_tool(weather_tools["weather.slow_alerts"],
                             ToolCall("1", "weather.slow_alerts", {"region": "north"}))
    assert outcome.result["error"] == "timeout"


async def test_a_server_that_cannot_start_is_skipped():
    tools, connections = await connect_all([McpServer("broken", sys.executable, ["-c", "import sys; sys.exit(3)"])])
    assert tools == [] and connections == []


class OneCall:
    """The model's side, scripted: call the MCP tool, then read the result."""

    name = "scripted"

    def __init__(self):
        self.replies = ['{"name": "weather.get_forecast", "arguments": {"city": "Lisbon"}}', "Sunny in Lisbon."]
        self.requests = []

    async def stream_chat(self, messages, options=None):
        self.requests.append(messages)
        yield self.replies.pop(0)

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass


async def test_the_agent_calls_an_mcp_tool_like_any_other(weather_tools):
    llm = OneCall()
    agent = Agent(llm, toolbox=Toolbox(weather_tools.values()))
    agent.hear("Weather in Lisbon?")
    items = [i async for i in agent.reply(1)]
    results = [i for i in items if getattr(i, "type", "") == "tool_result"]
    assert results[0].ok and results[0].result["sky"] == "sunny"
    # The call filler is said while the call is written, then the model's reading of the result
    assert "".join(i for i in items if isinstance(i, str)) == "Let me check. Sunny in Lisbon."
    await asyncio.sleep(0)
