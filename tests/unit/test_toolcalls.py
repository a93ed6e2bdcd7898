"""Parsing tool calls as small models write them, and holding them back from speech."""

from __future__ import annotations

import pytest

from voice.llm.toolcalls import SpeechGate, called_name, parse_reply, repair_json

WEATHER = ("get_weather", {"city": "Paris"})


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '```\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
    '{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
])
def test_every_form_small_models_use_is_parsed(text):
    assert parse_reply(text).calls == [WEATHER]


def test_prose_around_a_tagged_call_is_kept_apart():
    reply = parse_reply('Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    assert reply.calls == [WEATHER] and reply.prose == "Let me check."


def test_two_calls_in_one_reply_are_both_found():
    reply = parse_reply('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
                        '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    assert reply.calls == [("a", {}), ("b", {"x": 1})]


@pytest.mark.parametrize("broken", [
    "{'name': 'get_weather', 'arguments': {'city': 'Paris'}}",            # Python quotes
    '{"name": "get_weather", "arguments": {"city": "Paris",}}',           # trailing comma
    '{"name": "get_weather", "arguments": {"city": "Paris"',              # cut off
])
def test_malformed_json_gets_one_repair(broken):
    reply = parse_reply(broken)
    assert reply.calls == [WEATHER] and reply.repaired


def test_python_literals_are_repaired_without_eval():
    assert repair_json("{'a': True, 'b': None}") == '{"a": true, "b": null}'


def test_json_that_is_not_a_call_yields_no_call():
    assert parse_reply('{"answer": "Paris"}').calls == []


def test_garbage_yields_no_call_and_an_error():
    reply = parse_reply("{not json at all")
    assert reply.calls == [] and reply.errors


def gate_run(deltas: list[str]) -> tuple[str, str]:
    gate = SpeechGate()
    spoken = "".join(gate.feed(d) for d in deltas)
    tail, held = gate.finish()
    return spoken + tail, held


def test_prose_is_released_as_it_streams():
    gate = SpeechGate()
    assert gate.feed("The weather ") == "The weather "
    assert gate.feed("is fine.") == "is fine."


@pytest.mark.parametrize("start", ['{"na', "```json\n{", "<tool_call>", "[{"])
def test_a_reply_that_may_be_a_call_is_held_back(start):
    spoken, held = gate_run([start, 'me": "x"}'])
    assert spoken == "" and held.startswith(start.strip()[:1])


def test_a_tag_split_across_deltas_is_held():
    spoken, held = gate_run(["<", "tool", "_call>", '{"name": "x"}'])
    assert spoken == "" and held.startswith("<tool_call>")


def test_prose_that_runs_into_a_code_block_stops_at_the_fence():
    spoken, held = gate_run(["To boil an egg, do this:", "\n\n`", "``python\ndef boil(): pass"])
    assert spoken.strip() == "To boil an egg, do this:" and held.startswith("```")


def test_json_is_never_spoken_even_after_prose():
    spoken, held = gate_run(["Sure, ", 'checking. {"name": "get_weather", ', '"arguments": {}}'])
    assert "{" not in spoken and held.startswith('{"name"')


def test_a_lone_angle_bracket_in_prose_is_spoken():
    assert gate_run(["I <3", " you"]) == ("I <3 you", "")


def test_the_name_of_a_call_being_written_is_known_once_its_quote_closes():
    gate = SpeechGate()
    for delta in ['{"name": "get_we', 'ather", "argu']:
        gate.feed(delta)
        if called_name(gate.held):
            break
    assert called_name(gate.held) == "get_weather"
    assert called_name('{"name": "get_we') is None
