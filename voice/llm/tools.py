"""Tools: plain Python functions the agent may call, with a JSON Schema made from their type hints.

    @tool(timeout_s=2, triggers=("weather", "rain"))
    def get_weather(city: str, day: Literal["today", "tomorrow"] = "today") -> dict:
        '''Weather for a city.

        Args:
            city: the city name, e.g. "Paris"
        '''

The schema comes from pydantic (a model created from the signature), descriptions from the
docstring (first paragraph, Google-style "Args:" lines). Arguments from the model are validated
against that model before the function runs: extra keys are dropped (small models invent them),
wrong types are errors the model sees and can fix.

Execution never blocks the event loop: sync functions run in a worker thread, async ones on the
loop; each under the tool's timeout. A thread cannot be killed, so a sync tool that times out
runs to its end in the background and its result is dropped: give slow sync tools idempotent side
effects. Every failure (bad arguments, unknown tool, exception, timeout) becomes a structured
error result, `{"error": kind, "message": ...}`, so the model can retry, ask or apologise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_jsonable_python

from voice.agents.slots import normalize

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
ErrorKind = Literal["invalid_arguments", "ungrounded", "unknown_tool", "failed", "crashed", "timeout", "declined"]


class ToolError(Exception):
    """Raised by a tool to report a failure the user should hear about ("no table free at 8")."""


@dataclass(frozen=True)
class Tool:
    """One callable tool. `validate` turns raw model arguments into the keyword arguments of `fn`."""

    name: str
    description: str
    parameters: dict[str, Any]                      # JSON Schema of the arguments object
    fn: Callable[..., Any]
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Changes the world (books, sends, deletes): runs only after the user says yes to `confirm`.
    consequential: bool = False
    #: The spoken question for a consequential call: a template formatted with the arguments,
    #: or a function of them.
    confirm: str | Callable[[dict[str, Any]], str] | None = None
    #: Word beginnings in the user's turn that make this tool worth offering (empty: always offered).
    #: Small models call tools they are shown; not showing irrelevant ones is the cheapest fix.
    triggers: tuple[str, ...] = ()
    #: Arguments whose value the user must have said (a city): a 0.5B model fills in "Paris" when
    #: the user named none. Checked when the caller passes what the user said.
    grounded: tuple[str, ...] = ()
    #: Arguments that are a clock time ("time"), a day ("day") or what to do ("what"): the agent reads
    #: them from the user's words (voice/agents/dates.py) instead of trusting the model with them.
    kinds: dict[str, str] = field(default_factory=dict)
    #: The spoken answer for a successful result: a template formatted with the result's fields,
    #: or a function of the result. Set: no second LLM round (faster, and nothing to misread).
    say: str | Callable[[Any], str] | None = None
    #: What to ask when an argument is missing or was not said, by argument name.
    questions: dict[str, str] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style definition that chat templates render."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def renamed(self, name: str) -> Tool:
        return replace(self, name=name)

    def confirmation(self, arguments: dict[str, Any]) -> str:
        """The yes/no question asked before a consequential call runs."""
        if callable(self.confirm):
            return self.confirm(arguments)
        if self.confirm:
            try:
                return self.confirm.format(**arguments)
            except (KeyError, IndexError, ValueError):
                log.warning("confirm template of %s does not fit %s", self.name, arguments)
        args = ", ".join(f"{k} {v}" for k, v in arguments.items())
        return f"Shall I {self.name.replace('_', ' ')}{' with ' + args if args else ''}?"

    def answer(self, result: Any) -> str | None:
        """The spoken line for a successful result (`say`), or None: the model phrases it."""
        if callable(self.say):
            return self.say(result)
        if self.say and isinstance(result, dict):
            try:
                return self.say.format(**result)
            except (KeyError, IndexError, ValueError):
                log.warning("say template of %s does not fit %s", self.name, result)
        return None

    def question(self, argument: str) -> str:
        """What to ask the user for `argument`."""
        if argument in self.questions:
            return self.questions[argument]
        about = self.parameters.get("properties", {}).get(argument, {}).get("description", "")
        return f"Could you tell me the {argument.replace('_', ' ')}{f' ({about})' if about else ''}?"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """`get_weather(city="Paris")`: how a call is shown to the model in result notes."""
        args = ", ".join(f"{k}={to_jsonable_python(v)!r}".replace("'", '"') for k, v in self.arguments.items())
        return f"{self.name}({args})"


@dataclass(frozen=True)
class ToolOutcome:
    """What a call produced: `result` is JSON-able; on failure it is {"error": kind, "message": ...}."""

    call: ToolCall
    ok: bool
    result: Any

    @property
    def error_kind(self) -> str | None:
        return None if self.ok else str(self.result.get("error"))


def error_outcome(call: ToolCall, kind: ErrorKind, message: str) -> ToolOutcome:
    return ToolOutcome(call, False, {"error": kind, "message": message})


# ---------------------------------------------------------------- making tools


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a docstring with an optional "Args:" section."""
    text = inspect.cleandoc(doc or "")
    head, _, args_part = text.partition("\nArgs:")
    description = " ".join(head.strip().split("\n\n")[0].split())
    params: dict[str, str] = {}
    current = None
    for line in args_part.splitlines():
        m = re.match(r"\s*(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
        if m and line.startswith((" ", "\t")) and (len(line) - len(line.lstrip())) <= 8:
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip() and current:
            current = None
    return description, params


def _model_validator(model: type[BaseModel]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        parsed = model.model_validate(arguments)
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}
    return validate


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
         consequential: bool = False, confirm: str | Callable[[dict[str, Any]], str] | None = None,
         triggers: Iterable[str] = (), grounded: Iterable[str] = (), say: str | Callable[[Any], str] | None = None,
         questions: dict[str, str] | None = None) -> Any:
    """Make a Tool from a typed function; usable bare (`@tool`) or with options (`@tool(timeout_s=2)`)."""

    def make(func: Callable[..., Any]) -> Tool:
        description, docs = parse_docstring(func.__doc__)
        hints = get_type_hints(func, include_extras=True)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(func).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {func.__name__}: *args/**kwargs cannot be described to a model")
            if pname not in hints:
                raise TypeError(f"tool {func.__name__}: parameter {pname!r} needs a type hint")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints[pname], Field(default, description=docs.get(pname)))
        model = create_model(f"{func.__name__}_args", __config__=ConfigDict(extra="ignore"), **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        kinds = {p: k for p, hint in hints.items() if p != "return" and (k := argument_kind(hint))}
        return Tool(name=name or func.__name__, description=description or func.__name__, parameters=schema,
                    fn=func, validate=_model_validator(model), timeout_s=timeout_s, consequential=consequential,
                    confirm=confirm, triggers=tuple(t.lower() for t in triggers), grounded=tuple(grounded),
                    kinds=kinds, say=say, questions=dict(questions or {}))

    return make(fn) if fn is not None else make


def argument_kind(hint: Any) -> str | None:
    """"time" for a ClockTime argument, "day" for a CalendarDay one, "what" for WhatText (also
    inside Optional): the agent reads these from the user's words (voice/llm/grounding.py)."""
    from voice.agents.dates import CalendarDay, WhatText
    from voice.agents.slots import ClockTime

    kinds = {"time": ClockTime, "day": CalendarDay, "what": WhatText}
    return next((kind for candidate in (hint, *get_args(hint)) for kind, t in kinds.items() if candidate == t), None)


_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "array": list, "object": dict}


def schema_validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A validator for a JSON Schema object of simple properties (what MCP servers publish):
    types, enums, required vs optional. Nested schemas are checked as plain lists/objects."""
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for pname, prop in schema.get("properties", {}).items():
        kind: Any = Literal[tuple(prop["enum"])] if prop.get("enum") else _JSON_TYPES.get(prop.get("type", ""), Any)
        if pname in required:
            fields[pname] = (kind, ...)
        else:
            fields[pname] = (kind | None, prop.get("default"))
    model = create_model("arguments", __config__=ConfigDict(extra="ignore"), **fields)
    validate = _model_validator(model)

    def without_unset(arguments: dict[str, Any]) -> dict[str, Any]:
        # an optional argument the model did not give is left to the server's own default
        return {k: v for k, v in validate(arguments).items() if k in arguments or k in required}
    return without_unset


# ---------------------------------------------------------------- running tools


class Toolbox:
    """The tools an agent knows, by name."""

    def __init__(self, tools: Iterable[Tool] = ()):
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool) -> None:
        if t.name in self._tools:
            raise ValueError(f"two tools named {t.name!r}")
        self._tools[t.name] = t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def pick(self, names: Iterable[str]) -> list[Tool]:
        """The named tools that exist, in the order asked for ("ns.*" picks a namespace, "*" all)."""
        out: list[Tool] = []
        for wanted in names:
            if wanted == "*":
                out += [t for t in self._tools.values() if t not in out]
            elif wanted.endswith(".*"):
                out += [t for n, t in self._tools.items() if n.startswith(wanted[:-1])]
            elif wanted in self._tools:
                out.append(self._tools[wanted])
        return out

    async def run(self, call: ToolCall, said: str | None = None) -> ToolOutcome:
        t = self._tools.get(call.name)
        if t is None:
            known = ", ".join(self._tools) or "none"
            return error_outcome(call, "unknown_tool", f"there is no tool named {call.name!r}; tools: {known}")
        return await run_tool(t, call, said)

    async def run_all(self, calls: Iterable[ToolCall], said: str | None = None) -> list[ToolOutcome]:
        """Run calls concurrently; outcomes in call order."""
        return list(await asyncio.gather(*(self.run(c, said) for c in calls)))


def was_said(value: str, said: str) -> bool:
    """Whether the user's words hold the value: all of it, or one of its longer words ("Nairobi,
    Kenya" for "weather in Nairobi"; "New York City" for "in New York")."""
    heard, norm = normalize(said), normalize(value)
    if norm and norm in heard:
        return True
    words = set(heard.split())
    return any(len(w) >= 4 and w in words for w in norm.split())


def check_arguments(t: Tool, call: ToolCall) -> ToolCall | ToolOutcome:
    """The call with validated arguments, or an invalid_arguments outcome the model can act on."""
    try:
        return replace(call, arguments=t.validate(dict(call.arguments)))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}"
                             for err in e.errors(include_url=False))
        return error_outcome(call, "invalid_arguments", problems)


async def run_tool(t: Tool, call: ToolCall, said: str | None = None) -> ToolOutcome:
    """Validate (and check `grounded` arguments against `said`, the user's words), run under the
    timeout, and turn every failure into an error outcome."""
    checked = check_arguments(t, call)
    if isinstance(checked, ToolOutcome):
        return checked
    for name in t.grounded if said is not None else ():
        value = checked.arguments.get(name)
        if isinstance(value, str) and not was_said(value, said or ""):
            return error_outcome(checked, "ungrounded", f"the user did not say {name} {value!r}; do not guess")
    try:
        if inspect.iscoroutinefunction(t.fn):
            work: Awaitable[Any] = t.fn(**checked.arguments)
        else:
            work = asyncio.to_thread(t.fn, **checked.arguments)
        result = await asyncio.wait_for(work, t.timeout_s)
    except TimeoutError:
        log.warning("tool %s timed out after %.1f s", t.name, t.timeout_s)
        return error_outcome(checked, "timeout", f"{t.name} did not answer within {t.timeout_s:g} seconds")
    except ToolError as e:
        return error_outcome(checked, "failed", str(e))
    except Exception as e:  # a tool bug must not end the turn, let alone the session
        log.exception("tool %s crashed", t.name)
        return error_outcome(checked, "crashed", f"{type(e).__name__}: {e}")
    return ToolOutcome(checked, True, to_jsonable_python(result, fallback=str))
