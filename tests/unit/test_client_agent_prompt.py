"""ClientAgent's prompt: the client's tool outputs reach the model as facts in its system prompt."""

from __future__ import annotations

import itertools

from voice.llm.client_agent import ClientAgent
from voice.llm.replies import FACTS_HEADER


def agent() -> ClientAgent:
    counter = itertools.count()
    return ClientAgent(None, None, instructions="Be brief.",  # type: ignore[arg-type] # no model needed
                       tools=[{"name": "get_weather"}], new_id=lambda prefix: f"{prefix}_{next(counter)}")


def called(a: ClientAgent, output: str) -> None:
    a.add("user", "Weather in Oslo?")
    a.add("assistant", "", tool_calls=[{"id": "call_1", "type": "function",
                                        "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}])
    assert a.add_tool_output("call_1", output) is not None


def test_outputs_since_the_user_spoke_are_facts_and_the_call_is_not_shown():
    a = agent()
    called(a, '{"conditions": "foggy"}')
    prompt = a._prompt(None)
    assert prompt[0] == {"role": "system",
                         "content": f'Be brief.\n{FACTS_HEADER}\n* get_weather: {{"conditions": "foggy"}}'}
    assert prompt[1:] == [{"role": "user", "content": "Weather in Oslo?"}]


def test_a_new_user_message_ends_the_facts():
    a = agent()
    called(a, "17 degrees")
    a.add("assistant", "It is 17 degrees.")
    a.add("user", "Thanks!")
    assert a._results() == []
    assert a._prompt(None)[0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in a._prompt(None)] == ["system", "user", "assistant", "user"]


def test_an_unknown_call_id_adds_nothing():
    a = agent()
    assert a.add_tool_output("call_nobody_made", "{}") is None
    assert a._results() == []
