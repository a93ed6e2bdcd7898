"""Tool-call grammars built from the tools' JSON schemas (voice/llm/grammar.py)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from voice.llm.grammar import call_schema, tool_call_grammar
from voice.llm.tools import tool


class Address(BaseModel):
    street: str
    number: int


@tool
def get_weather(city: str, day: Literal["today", "tomorrow"] = "today") -> dict:
    """Weather."""
    return {}


@tool
def ship(to: Address, items: list[str], express: bool, weight_kg: Annotated[float, Field(ge=0)]) -> dict:
    """Ship a parcel."""
    return {}


@tool
def list_reminders() -> dict:
    """List."""
    return {}


TOOLS = [get_weather.schema(), ship.schema(), list_reminders.schema()]


def rules(gbnf: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)


def test_only_the_allowed_tools_can_be_named():
    gbnf = tool_call_grammar(TOOLS, ["get_weather", "list_reminders"])
    assert '"\\"get_weather\\""' in gbnf and '"\\"list_reminders\\""' in gbnf and "ship" not in gbnf


def test_an_enum_allows_exactly_its_values():
    enum_rule = next(v for k, v in rules(tool_call_grammar(TOOLS, ["get_weather"])).items() if k.endswith("-day"))
    assert enum_rule == '"\\"today\\"" | "\\"tomorrow\\""'


def test_required_arguments_are_not_optional_and_optional_ones_are():
    args = next(v for k, v in rules(tool_call_grammar(TOOLS, ["get_weather"])).items()
                if k.endswith("-arguments"))
    assert args.index("city-kv") < args.index("(")          # city first and outside the optional group
    assert re.search(r"\(.*day-kv.*\)\?", args)            # day inside an optional group


def test_nested_objects_arrays_booleans_and_numbers_are_typed():
    r = rules(tool_call_grammar(TOOLS, ["ship"]))
    to = next(v for k, v in r.items() if k.endswith("-to"))
    assert "street-kv" in to and "number-kv" in to
    assert any(k.endswith("-items") and "string" in v for k, v in r.items())
    assert {"boolean", "number", "integer"} <= set(r)


def test_a_call_is_tagged_or_bare_and_then_the_reply_ends():
    root = rules(tool_call_grammar(TOOLS))["root"]
    assert root.startswith('"<tool_call>" nl call nl "</tool_call>"') and root.endswith("| call")


def test_a_tool_without_arguments_gets_an_empty_object():
    schema = call_schema(TOOLS, ["list_reminders"])
    assert schema["oneOf"][0]["properties"]["arguments"] == {"properties": {}, "type": "object"}


def test_no_allowed_tool_is_an_error():
    with pytest.raises(ValueError):
        call_schema(TOOLS, ["nope"])


def test_regex_classes_in_patterns_become_character_sets_llama_cpp_can_parse():
    @tool
    def on_day(day: Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\d$")]) -> dict:
        """A day."""
        return {}

    gbnf = tool_call_grammar([on_day.schema()])
    assert "\\d" not in gbnf and "[0-9]" in gbnf
