"""Tool arguments the user's own words decide: clock times and days.

The model writes the call; for every argument of kind "time" or "day" (Tool.kinds) the value is
read again from what the user said, relative to the agent's clock (voice/agents/dates.py). A
time the user did not say is never used: the agent asks for it instead. Measured before: "remind
me at 6 pm" became 06:00 in the call, and the confirmation read "... at 6 pm at 6 am?".
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from voice.agents.dates import meridiem, next_occurrence, parse_clock, parse_day, what_to_do
from voice.agents.slots import normalize, parse_time
from voice.llm.tools import Tool, ToolCall, was_said

_QUESTION = re.compile(r"^(?:\W*(?:wait|oh|hmm|um|okay|ok|so|and|but|also|actually|hey|sorry)\b\W*)*"
                       r"(?:what|what's|whats|how|will|is|are|can|could|do|does|did|when|where|who|why|which|"
                       r"should|would|shall)\b")


def ground(tool: Tool, call: ToolCall, said: str, now: datetime) -> tuple[ToolCall, str | None]:
    """(the call with its time and day arguments taken from `said`, the first such argument the
    user did not give or None). Tools without such arguments pass unchanged."""
    if not tool.kinds:
        return call, None
    args = dict(call.arguments)
    for name in (n for n, kind in tool.kinds.items() if kind == "what"):
        if (what := what_to_do(said)) is not None:
            args[name] = what  # the user's own words, not the model's retelling (it copied the example)
    day = parse_day(said, now)
    missing = None
    times = [name for name, kind in tool.kinds.items() if kind == "time"]
    for name in times:
        value = parse_clock(said, now, day)
        if value is None:
            args.pop(name, None)
            missing = missing or name
        else:
            args[name] = value
    for name in (n for n, kind in tool.kinds.items() if kind == "day"):
        clock = next((args[t] for t in times if t in args), None)
        if day is None and clock is not None:
            day = next_occurrence(clock, None, now)
        if day is None:
            args.pop(name, None)  # the model cannot count days: an unsaid day is left to the tool's default
        else:
            args[name] = day.isoformat()
    required = set(tool.parameters.get("required", []))
    if missing is not None and missing not in required and not args.get(missing):
        missing = None
    return replace(call, arguments=args), missing



def unsaid(tool: Tool, call: ToolCall, said: str) -> str | None:
    """The first `grounded` argument whose value the user never said ("Paris" for "is it cold?")."""
    return next((name for name in tool.grounded if isinstance(call.arguments.get(name), str)
                 and not was_said(call.arguments[name], said)), None)


_ASKING = r"(?:(?:please|hey|ok|okay|now|and|also|just)\s+)*(?:(?:can|could|would|will) you\s+(?:please\s+)?|" \
          r"i (?:want|need|would like) you to\s+|(?:please\s+)?)"
_ACTION = re.compile(rf"^{_ASKING}(?:send|e ?mail|text|message|call|phone|dial|ring|book|reserve|order|buy|purchase|"
                     r"pay|transfer|play|stream|turn (?:on|off|up|down)|switch (?:on|off)|dim|open|close|lock|unlock|"
                     r"schedule|cancel|delete|navigate|drive|post|tweet|share|upload|download|install|"
                     # "start the timer" acts; "stop", "stop please", "stop it" ask the agent to stop talking
                     r"(?:start|stop)\s+(?!(?:please|now|it|that|talking|there|thanks?|thank you)\b)\w+)\b")


_LIVE = re.compile(r"\b(?:weather|forecast|temperature|rain(?:ing|y)?|snow(?:ing)?|sunny|news|headlines|stock|"
                   r"share price|exchange rate|score|traffic|flight status)\b")


def asks_live_data(text: str) -> bool:
    """A question about something only a live source knows (weather, news, prices, scores,
    traffic): without a tool for it, any answer would be made up."""
    return is_question(text) and _LIVE.search(normalize(text)) is not None


def is_action_request(text: str) -> bool:
    """The words ask for something to be done in the world ("Send an email to my boss", "Can you
    call my mom?", "Turn on the lights"), as opposed to asking for an answer."""
    return _ACTION.match(normalize(text)) is not None


_REQUEST = re.compile(rf"^{_ASKING}(?:remind|set|tell|check|give|show|find|get|add|make|list|look|read|save|"
                      r"create|put|note|let me know)\b")


def is_request(text: str) -> bool:
    """A question, or an instruction to look something up or note it ("Remind me to ...", "Set a
    reminder ...", "Tell me the weather ..."), as opposed to a remark."""
    return is_question(text) or _REQUEST.match(normalize(text)) is not None


def is_question(text: str) -> bool:
    """The words ask something ("Wait, will it rain in London?"), as opposed to answering."""
    return text.strip().endswith("?") or _QUESTION.match(normalize(text)) is not None


def correct(tool: Tool, call: ToolCall, text: str, now: datetime) -> ToolCall | None:
    """A proposed call with the time or day the user just corrected ("No, make it four." after
    3 pm: 16:00, the same half of the day unless the words say otherwise), or None."""
    args = dict(call.arguments)
    day = parse_day(text, now)
    for name, kind in tool.kinds.items():
        if kind == "day" and day is not None:
            args[name] = day.isoformat()
        if kind == "time" and isinstance(args.get(name), str):
            new = parse_clock(text, now, day) if meridiem(text) else parse_time(text, prefer_pm=False)
            if new is not None and not meridiem(text) and int(new[:2]) < 12 <= int(args[name][:2]):
                new = f"{int(new[:2]) + 12:02d}{new[2:]}"  # keep the afternoon of the time it corrects
            if new is not None:
                args[name] = new
    for name, kind in tool.kinds.items():  # a new time that has passed today moves to tomorrow
        if kind == "day" and day is None and args.get(name) == now.date().isoformat():
            clock = next((args[n] for n, k in tool.kinds.items() if k == "time" and n in args), None)
            if clock is not None:
                args[name] = next_occurrence(clock, None, now).isoformat()
    return replace(call, arguments=args) if args != call.arguments else None

