"""Tool calls an OpenAI-compatible server parsed itself reach the agent as text calls."""

from __future__ import annotations

import json

from voice.llm.openai_compat import ToolCallFragments
from voice.llm.toolcalls import parse_reply


def event(delta: dict) -> str:
    return "data: " + json.dumps({"choices": [{"delta": delta}]})


def test_streamed_fragments_become_one_parsable_call_per_index():
    calls = ToolCallFragments()
    for line in [
        event({"role": "assistant", "content": None}),
        event({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
        event({"tool_calls": [{"index": 1, "function": {"name": "list_reminders", "arguments": "{}"}}]}),
        "data: [DONE]",
    ]:
        calls.add(line)
    assert parse_reply(calls.text()).calls == [("get_weather", {"city": "Paris"}), ("list_reminders", {})]


def test_a_reply_without_calls_adds_no_text_and_malformed_events_are_ignored():
    calls = ToolCallFragments()
    for line in [event({"content": "Hello"}), "data: {not json", ": keep-alive", "data: [DONE]"]:
        calls.add(line)
    assert calls.text() == ""
