"""Tool arguments the user's own words decide: clock times and days.

The model writes the call; for every argument of kind "time" or "day" (Tool.kinds) the value is
read again from what the user said, relative to the agent's clock (voice/agents/dates.py). A
time the user did not say is never used: the agent asks for it instead. Measured before: "remind
me at 6 pm" became 06:00 in the call, and the confirmation read "... at 6 pm at 6 am?".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from voice.agents.dates import next_occurrence, parse_clock, parse_day
from voice.llm.tools import Tool, ToolCall


def ground(tool: Tool, call: ToolCall, said: str, now: datetime) -> tuple[ToolCall, str | None]:
    """(the call with its time and day arguments taken from `said`, the first such argument the
    user did not give or None). Tools without such arguments pass unchanged."""
    if not tool.kinds:
        return call, None
    args = dict(call.arguments)
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

