"""Tools from typed functions: schema, validation, execution rules (threads, timeouts, errors)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated, Literal

import pytest
from pydantic import Field

from voice.agents.assistant import get_weather
from voice.agents.slots import ClockTime
from voice.llm.tools import Tool, Toolbox, ToolCall, parse_docstring, run_tool, schema_validator, tool


@tool(timeout_s=1.0)
def forecast(city: str, day: Literal["today", "tomorrow"] = "today",
             days: Annotated[int, Field(ge=1, le=7)] = 1) -> dict:
    """Weather forecast for a city.

    More detail that is not part of the description.

    Args:
        city: the city name, e.g. Paris
        day: which day
    """
    return {"city": city, "day": day, "days": days}


def test_the_schema_comes_from_the_type_hints():
    props = forecast.parameters["properties"]
    assert forecast.parameters["required"] == ["city"]
    assert props["city"]["type"] == "string"
    assert props["day"]["enum"] == ["today", "tomorrow"] and props["day"]["default"] == "today"
    assert props["days"]["minimum"] == 1 and props["days"]["maximum"] == 7


def test_descriptions_come_from_the_docstring():
    assert forecast.description == "Weather forecast for a city."
    assert forecast.parameters["properties"]["city"]["description"] == "the city name, e.g. Paris"


def test_the_definition_is_in_the_openai_shape_chat_templates_render():
    schema = forecast.schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "forecast"
    assert schema["function"]["parameters"] is forecast.parameters


def test_a_parameter_without_a_type_hint_is_refused():
    def untyped(x):
        """No hint."""

    with pytest.raises(TypeError, match="needs a type hint"):
        tool(untyped)


def test_docstring_args_may_span_lines_and_carry_types():
    desc, params = parse_docstring("""Do it.\n\nArgs:\n    a (int): first\n        and more\n    b: second\n""")
    assert desc == "Do it." and params == {"a": "first and more", "b": "second"}


async def test_arguments_are_validated_and_extra_keys_dropped():
    outcome = await run_tool(forecast, ToolCall("1", "forecast", {"city": "Rome", "days": "3", "type": "object"}))
    assert outcome.ok and outcome.result == {"city": "Rome", "day": "today", "days": 3}


async def test_invalid_arguments_are_an_error_result_the_model_can_read():
    outcome = await run_tool(forecast, ToolCall("1", "forecast", {"city": "Rome", "day": "yesterday"}))
    assert not outcome.ok and outcome.result["error"] == "invalid_arguments"
    assert "day" in outcome.result["message"]


async def test_a_time_argument_is_normalised_before_validation():
    @tool
    def at(time: ClockTime) -> str:
        """When."""
        return time

    outcome = await run_tool(at, ToolCall("1", "at", {"time": "18:00 24h"}))
    assert outcome.result == "18:00"


async def test_a_grounded_argument_the_user_never_said_is_refused():
    call = ToolCall("1", "get_weather", {"city": "Paris"})
    refused = await run_tool(get_weather, call, said="Is it going to rain today?")
    assert refused.result["error"] == "ungrounded"
    assert (await run_tool(get_weather, call, said="Rain in paris today?")).ok


async def test_a_sync_tool_runs_in_a_worker_thread():
    @tool
    def where() -> str:
        """Which thread."""
        return threading.current_thread().name

    outcome = await run_tool(where, ToolCall("1", "where"))
    assert outcome.result != threading.current_thread().name


async def test_a_slow_sync_tool_times_out_without_blocking_the_loop():
    @tool(timeout_s=0.1)
    def stuck() -> str:
        """Sleeps."""
        time.sleep(0.5)
        return "late"

    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    outcome = await run_tool(stuck, ToolCall("1", "stuck"))
    task.cancel()
    assert outcome.result["error"] == "timeout" and ticks >= 5


async def test_a_tool_error_is_reported_with_its_message():
    outcome = await run_tool(get_weather, ToolCall("1", "get_weather", {"city": "Atlantis"}))
    assert outcome.result["error"] == "failed" and "Atlantis" in outcome.result["message"]


async def test_a_crashing_tool_becomes_an_error_result():
    @tool
    def broken() -> str:
        """Fails."""
        raise KeyError("oops")

    outcome = await run_tool(broken, ToolCall("1", "broken"))
    assert outcome.result["error"] == "crashed" and "KeyError" in outcome.result["message"]


async def test_an_unknown_tool_name_is_an_error_that_lists_the_tools():
    outcome = await Toolbox([forecast]).run(ToolCall("1", "weather_now"))
    assert outcome.result["error"] == "unknown_tool" and "forecast" in outcome.result["message"]


async def test_several_calls_run_concurrently():
    @tool
    async def wait(ms: int) -> int:
        """Waits."""
        await asyncio.sleep(ms / 1000)
        return ms

    started = time.monotonic()
    outcomes = await Toolbox([wait]).run_all([ToolCall(str(i), "wait", {"ms": 200}) for i in range(3)])
    assert [o.result for o in outcomes] == [200, 200, 200]
    assert time.monotonic() - started < 0.5


def test_a_consequential_tool_asks_with_its_template():
    @tool(consequential=True, confirm="Shall I send {text!r}?")
    def send(text: str) -> None:
        """Send."""

    assert send.consequential and send.confirmation({"text": "hi"}) == "Shall I send 'hi'?"


def test_a_json_schema_validator_checks_types_enums_and_required():
    validate = schema_validator({"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer"}}})
    assert validate({"city": "Oslo", "days": "2", "x": 1}) == {"city": "Oslo", "days": 2}
    with pytest.raises(ValueError):
        validate({"city": "Oslo", "unit": "kelvin"})


def test_a_namespace_picks_all_its_tools():
    a, b = (Tool(name=n, description="", parameters={}, fn=print, validate=dict) for n in ("w.a", "w.b"))
    assert [t.name for t in Toolbox([a, b, forecast]).pick(["w.*"])] == ["w.a", "w.b"]
