"""What the agent says about tool outcomes, in its own fixed words, and what the model is told.

Why fixed lines: a 0.5B model handed an error note or a role "tool" result repeats it (measured
with Qwen2.5-0.5B on the shipped prompts: every error note and every role-"tool" result came back
as the call or the note itself; a failed lookup for "Atlantis" was answered with made-up weather).
So errors, refusals and questions are spoken from here; a successful result is spoken from the
tool's `say` template when it has one, and otherwise handed to the model as *facts in its system
prompt* (the one form it answered from correctly: "The weather in Paris tomorrow is light rain with
a high of 14 degrees.") for a round without tools.
"""

from __future__ import annotations

import json
from typing import Any

from voice.llm.rounds import Turn
from voice.llm.tools import Tool, ToolOutcome

DECLINED = "Okay, I won't do that."
FAILED = "Sorry, that didn't work just now. Please try again in a moment."
#: Spoken when the model's words were all held back (internal text, echoes) or there were none.
NOTHING_TO_SAY = "Sorry, I'm not sure about that one."
#: Spoken instead of a claimed action that no tool did: when no action tool was offered...
CANNOT = "Sorry, I can't do that."
#: ...and when one was, but the model did not call it.
NOT_DONE = "Sorry, I haven't done that yet. Could you ask me again?"


def out_of_range(slots: dict[str, Any], text: str) -> str | None:
    """"Sorry, ..." when the words give a value for one of the state's slots that its bounds
    refuse (a party of 20 where 12 is the most, 11 pm after closing): the limit is said, not
    just the question again."""
    from voice.agents.slots import parse_integer, parse_time, spoken_time

    for spec in slots.values():
        if spec.type == "integer" and (spec.minimum is not None or spec.maximum is not None):
            value = parse_integer(text)
            low = spec.minimum if spec.minimum is not None else value
            high = spec.maximum if spec.maximum is not None else value
            if value is not None and not low <= value <= high:
                return f"Sorry, it has to be between {low} and {high}."
        if spec.type == "time" and (spec.earliest or spec.latest):
            value = parse_time(text)
            if value and ((spec.earliest and value < spec.earliest) or (spec.latest and value > spec.latest)):
                return (f"Sorry, that's outside our hours: from {spoken_time(spec.earliest or '00:00')} "
                        f"to {spoken_time(spec.latest or '23:59')}.")
    return None


def closing_line(t: Turn, fallback: str) -> str | None:
    """The turn's last words when needed: an honest line after a claimed action that no tool did,
    a fixed one when nothing could be said (the guard held it all back, or there was nothing)."""
    if any(verdict == "claim" for verdict, _ in t.dropped) and not t.acted:
        return NOT_DONE if t.offered_action else CANNOT
    if t.spoken.strip():
        return None
    return NOTHING_TO_SAY if t.dropped else fallback


def outcome_line(outcome: ToolOutcome, tool: Tool | None) -> str | None:
    """The fixed line for an outcome, or None when the model should phrase a successful result
    (no `say` template) or the outcome needs no words (a built-in flow tool)."""
    if outcome.ok:
        return tool.answer(outcome.result) if tool is not None else None
    kind, message = outcome.error_kind, str(outcome.result.get("message", ""))
    if kind == "declined":
        return DECLINED
    if kind in ("invalid_arguments", "ungrounded") and tool is not None:
        return tool.question(bad_argument(outcome, tool) or "")
    if kind == "failed" and message:  # a ToolError's message is written for the user
        first = message[:1].lower() if message[1:2].islower() else message[:1]
        return f"Sorry, {first}{message[1:].rstrip('.')}."
    if kind == "unknown_tool":
        return None
    return FAILED


def bad_argument(outcome: ToolOutcome, tool: Tool) -> str | None:
    """The argument an invalid_arguments / ungrounded error is about (first named in the message)."""
    message = str(outcome.result.get("message", ""))
    names = list(tool.parameters.get("properties", {}))
    found = [(message.find(n), n) for n in names if n in message]
    return min(found)[1] if found else (names[0] if names else None)


FACTS_HEADER = "Facts for your answer (answer the user's last message with them, in plain words):"


def facts(outcomes: list[ToolOutcome]) -> str:
    """Successful results for the model's system prompt (never a note it could read out)."""
    lines = [f"* {o.call.name}: {json.dumps(o.result, ensure_ascii=False)}" for o in outcomes if o.ok]
    return FACTS_HEADER + "\n" + "\n".join(lines) if lines else ""


def internal_texts(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[str]:
    """What the model was told that the user must never hear read back: the prompt's rules (its
    "- " lines), the facts header and the tool definitions. Not the identity, goal and ask lines:
    they hold what the agent is meant to say ("we are open from 5 pm to 10 pm", "how many people?")."""
    out = [FACTS_HEADER]
    for m in messages:
        if m.get("role") == "system" and m.get("content"):
            out += [line.strip()[2:] for line in str(m["content"]).splitlines() if line.strip().startswith("- ")]
    for t in tools or []:
        f = t.get("function", {})
        out.append(str(f.get("description", "")))
        out += [str(p.get("description", "")) for p in f.get("parameters", {}).get("properties", {}).values()]
    return [t for t in out if t]
