"""What the agent reports while it answers a turn, besides the words it speaks.

Plain records that know nothing of any wire: the turn controller passes them on, and each door
(our binary protocol, Twilio, the OpenAI Realtime API) maps them to its own messages. `type`
names the event the same way on every door that shows it ("tool_call", ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


class Line(str):
    """A whole sentence of the agent's own (a filler, a question, a confirmation), not model text
    still streaming: it is spoken at once (the TTS does not wait for the words after it, which may
    be a tool call and its result away)."""


@dataclass(frozen=True)
class ToolStarted:
    """The agent called a tool (arguments as the tool will see them when they are valid)."""

    type: ClassVar[str] = "tool_call"
    turn: int
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolFinished:
    """What a tool call returned; `ok` False carries a structured error in `result`."""

    type: ClassVar[str] = "tool_result"
    turn: int
    id: str
    ok: bool
    result: Any = None


@dataclass(frozen=True)
class StateChanged:
    """The dialogue flow moved to `state` (a path like "booking.time"), with its slots so far."""

    type: ClassVar[str] = "state_changed"
    state: str
    slots: dict[str, Any] = field(default_factory=dict)


AgentEvent = ToolStarted | ToolFinished | StateChanged
