"""Dialogue flows: a state machine that decides what the agent is trying to do right now.

Flows are written in YAML (docs/flows.md says why and shows the format) and validated into the
pydantic models below; Python code may build the same models directly. A state has its own
prompt (identity, goal, rules), the tools it allows, typed slots to fill, and transitions:

    when: filled        all required slots of the state are set, one by this input (or the state
                        was reached by this same input: a modify loop passes filled states)
    when: changed       this input changed any slot of the flow
    when: llm           the model chose it through the built-in `go_to_step` tool (`description` says when)
    when: tool:NAME     tool NAME returned a result (not an error)
    when: declined:NAME the user said no to the consequential tool NAME
    when: done          the sub-flow run by this state (`flow: NAME`) reached a final state

Entering a state activates its prompt and tool set; a state with `flow:` pushes that sub-flow.
Global intents (start over, a human, goodbye) are recognised in every state, by phrase or DTMF
key. Slots are one flat dict per conversation, shared with sub-flows. `FlowRun` is pure logic (no
I/O, no asyncio): the agent feeds it user input and tool outcomes and reads back the state.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from voice.agents import slots as parse
from voice.llm.tools import Tool, tool

SlotType = Literal["text", "integer", "enum", "time", "bool"]
GO_TO_STEP, SET_SLOTS = "go_to_step", "set_slots"
START = "@start"
MAX_CHAIN = 16  # transitions one input may take (over-informing: "Italian for 4 at 7" takes three)


class FlowError(ValueError):
    """A flow file that cannot work; the message names the file and the key."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotSpec(_Spec):
    type: SlotType = "text"
    description: str = ""
    values: dict[str, list[str]] = Field(default_factory=dict)  # enum: value -> synonyms
    minimum: int | None = None                                  # integer bounds
    maximum: int | None = None
    earliest: str | None = None                                 # time bounds, "HH:MM"
    latest: str | None = None
    required: bool = True

    def read(self, text: str, *, strict: bool) -> Any:
        """This slot's value in `text`, or None. `strict`: only unambiguous mentions."""
        if self.type == "enum":
            return parse.match_choice(text, {k: tuple(v) for k, v in self.values.items()})
        if self.type == "integer":
            return parse.parse_integer(text, self.minimum, self.maximum, strict=strict)
        if self.type == "time":
            value = parse.parse_time(text, strict=strict)
            if value and ((self.earliest and value < self.earliest) or (self.latest and value > self.latest)):
                return None
            return value
        if self.type == "bool" and not strict:
            return parse.parse_yes_no(text)
        return None  # text slots are filled by the model (set_slots)


class TransitionSpec(_Spec):
    to: str
    when: str = "filled"  # not `on`: YAML 1.1 reads a bare `on` key as true
    description: str = ""
    save: list[str] = Field(default_factory=list)  # `when: tool:NAME`: result fields kept as slots


class TurnOverrides(_Spec):
    """End-of-turn settings while a state is current (a state that asks for a phone number lets
    people pause longer); unset fields keep the session's."""

    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    max_silence_ms: float | None = Field(None, gt=0, le=10000)
    complete_silence_ms: float | None = Field(None, gt=0, le=5000)


class StateSpec(_Spec):
    goal: str = ""
    ask: str | None = None          # said as is when the flow enters the state on the user's input
    identity: str | None = None     # overrides the flow's identity
    rules: list[str] = Field(default_factory=list)
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    transitions: list[TransitionSpec] = Field(default_factory=list)
    action: str | None = None       # tool proposed with the slot values while in this state
    flow: str | None = None         # sub-flow run by this state
    final: bool = False             # ends a sub-flow (in the top flow: the conversation's end)
    dtmf: dict[str, str] = Field(default_factory=dict)  # key -> what pressing it means, as if said
    #: Messages of history the model sees in this state (None: the memory's whole window). A 0.5B
    #: model echoes the question it just asked instead of calling go_to_step; 1 shows it the answer only.
    history: int | None = Field(None, ge=0)
    turn: TurnOverrides | None = None     # end-of-turn settings in this state
    end_call: bool = False          # the call ends once this state's words have been said


class IntentSpec(_Spec):
    phrases: list[str]
    dtmf: str | None = None
    to: str                          # a top-level state, or "@start" to start over
    say: str | None = None           # said first, before the target state's ask


DEFAULT_INTENTS = {
    "start_over": IntentSpec(phrases=["start over", "start again", "begin again", "from the beginning"],
                             dtmf="*", to=START, say="Sure, let's start over."),
    "human": IntentSpec(phrases=["talk to a human", "speak to a human", "real person", "an operator",
                                 "talk to someone", "speak to someone", "a human"], dtmf="0", to="handoff"),
    "goodbye": IntentSpec(phrases=["goodbye", "bye", "hang up"], dtmf="#", to="goodbye"),
}
DEFAULT_STATES = {
    "handoff": StateSpec(goal="tell the caller a person will take over", final=True,
                         ask="I'll connect you with a member of our team. Please hold on."),
    "goodbye": StateSpec(goal="say goodbye", final=True, ask="Thank you for calling. Goodbye!", end_call=True),
}


class FlowSpec(_Spec):
    name: str
    start: str
    identity: str = ""              # empty: the configured llm.system_prompt
    rules: list[str] = Field(default_factory=list)
    #: For rounds that offer tools or report their results: a 0.5B model writes calls under a short
    #: tool-minded prompt and refuses to under a long "plain spoken words only" one.
    tool_identity: str = ""
    tool_rules: list[str] = Field(default_factory=list)
    states: dict[str, StateSpec]
    intents: dict[str, IntentSpec] = Field(default_factory=lambda: dict(DEFAULT_INTENTS))
    subflows: dict[str, FlowSpec] = Field(default_factory=dict)
    #: The call's lifecycle for this agent (voice.pipeline.settings.CallSettings keys: greeting,
    #: reprompt_after_s, ...), over the server's defaults and under a session's own options.
    call: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _targets_exist(self) -> FlowSpec:
        if self.start not in self.states:
            raise ValueError(f"start state {self.start!r} is not in states")
        for name, st in self.states.items():
            for t in st.transitions:
                if t.to not in self.states:
                    raise ValueError(f"state {name!r}: transition to unknown state {t.to!r}")
            if st.flow and st.flow not in self.subflows:
                raise ValueError(f"state {name!r}: unknown sub-flow {st.flow!r}")
            if st.flow and not any(t.when == "done" for t in st.transitions):
                raise ValueError(f"state {name!r} runs sub-flow {st.flow!r} but has no 'when: done' transition")
        return self

    def with_defaults(self) -> FlowSpec:
        """The flow with the default handoff/goodbye states added where an intent needs them."""
        missing = {i.to for i in self.intents.values()} - set(self.states) - {START}
        extra = {name: DEFAULT_STATES[name] for name in missing if name in DEFAULT_STATES}
        unknown = missing - set(extra)
        if unknown:
            raise FlowError(f"flow {self.name!r}: intents lead to unknown states {sorted(unknown)}")
        return self.model_copy(update={"states": {**self.states, **extra}})

    def all_slots(self) -> dict[str, SlotSpec]:
        groups = [*(sub.all_slots() for sub in self.subflows.values()), *(st.slots for st in self.states.values())]
        return {name: slot for group in groups for name, slot in group.items()}

    def tool_names(self) -> set[str]:
        names = {n for st in self.states.values() for n in [*st.tools, st.action] if n}
        return names.union(*(sub.tool_names() for sub in self.subflows.values()))


def load_flow(source: str | Path) -> FlowSpec:
    """A flow from a YAML file (Path) or YAML text (str); raises FlowError with the failing key."""
    where = str(source) if isinstance(source, Path) else "<text>"
    try:
        data = yaml.safe_load(source.read_text() if isinstance(source, Path) else source)
        return FlowSpec.model_validate(data).with_defaults()
    except (OSError, yaml.YAMLError) as e:
        raise FlowError(f"{where}: {e}") from None
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise FlowError(f"{where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# ---------------------------------------------------------------- running a flow


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, values: dict[str, Any]) -> str:
    """`template` with {slot} fields filled ("" for unknown ones); enum values read as words."""
    shown = {k: str(v).replace("_", " ") if isinstance(v, str) else v for k, v in values.items() if v is not None}
    return string.Formatter().vformat(template, (), _Blank(shown))


@dataclass
class Frame:  # one (sub-)flow on the stack and its current state
    flow: FlowSpec
    state: str


@dataclass
class Heard:  # what one user input did to the flow
    intent: str | None = None
    changed: dict[str, Any] = field(default_factory=dict)
    moved: bool = False


class FlowRun:
    """One conversation's position in a flow: the stack of (sub-)flow frames and the slot values."""

    def __init__(self, spec: FlowSpec):
        self.spec = spec.with_defaults()
        self.stack = [Frame(self.spec, self.spec.start)]
        self.slots: dict[str, Any] = {}
        self.actions_done: dict[str, dict[str, Any]] = {}  # state path -> arguments of its done action
        self._slot_specs = self.spec.all_slots()

    # ------------------------------------------------------------ reading

    @property
    def frame(self) -> Frame:
        return self.stack[-1]

    @property
    def state(self) -> StateSpec:
        return self.frame.flow.states[self.frame.state]

    @property
    def path(self) -> str:
        """"booking/confirm", or "booking/contact/phone" inside a sub-flow."""
        return "/".join([self.stack[0].flow.name, *(f.state for f in self.stack[:-1]), self.frame.state])

    @property
    def name(self) -> str:
        return self.frame.state

    def snapshot(self) -> Any:
        return copy.deepcopy((self.stack, self.slots, self.actions_done))

    def restore(self, snap: Any) -> None:
        self.stack, self.slots, self.actions_done = copy.deepcopy(snap)

    def llm_choices(self) -> list[TransitionSpec]:
        return [t for t in self.state.transitions if t.when == "llm"]

    def model_slots(self) -> dict[str, SlotSpec]:
        """Slots of this state the model fills through set_slots (free text: no parser reads them)."""
        return {n: s for n, s in self.state.slots.items() if s.type == "text"}

    def pending_action(self) -> dict[str, Any] | None:
        """Arguments for this state's action when it is due (not done yet with these values)."""
        args = {k: v for k, v in self.slots.items() if v is not None}
        return None if not self.state.action or self.actions_done.get(self.path) == args else args

    def ask(self) -> str | None:
        """The state's question, its {slot} fields filled; choice values read as names ("Italian")."""
        if not self.state.ask:
            return None
        kinds = {k: self._slot_specs[k].type for k in self.slots if k in self._slot_specs}
        shown = {k: v.replace("_", " ").title() if kinds.get(k) == "enum"
                 else parse.spoken_time(v) if kinds.get(k) == "time" else v for k, v in self.slots.items()}
        return render(self.state.ask, shown)

    def prompt(self, profile: dict[str, Any] | None = None, summary: str = "", *, tools: bool = False) -> str:
        """The system prompt of the current state: identity, rules, goal, what is known."""
        st, flow, root = self.state, self.frame.flow, self.spec
        parts = [st.identity or (tools and root.tool_identity) or flow.identity or root.identity]
        rules = [*root.rules, *(root.tool_rules if tools else []), *(flow.rules if flow is not root else []),
                 *st.rules]
        if rules:
            parts.append("Rules:\n" + "\n".join(f"- {r}" for r in rules))
        if st.goal:
            parts.append(f"Your goal now: {st.goal}.")
        if st.ask:
            parts.append(f'Say something like: "{self.ask()}"')
        if known := "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.slots.items() if v is not None):
            parts.append(f"Known so far: {known}")
        if profile:
            parts.append("About the user: " + "; ".join(f"{k}: {v}" for k, v in profile.items()))
        if summary:
            parts.append(f"Earlier in this conversation: {summary}")
        return "\n".join(p for p in parts if p)

    def dtmf_text(self, digits: str) -> str:
        """What pressed keys mean, as words the flow understands: the state's menu, a global
        intent, or the digits themselves (a number answer)."""
        intents = {i.dtmf: i.phrases[0] for i in self.spec.intents.values() if i.dtmf}
        return self.state.dtmf.get(digits) or intents.get(digits) or digits

    # ------------------------------------------------------------ changing

    def hear(self, text: str) -> Heard:
        """Apply one user input: a global intent, else slot values and the transitions they cause."""
        norm = parse.normalize(text)
        for name, intent in self.spec.intents.items():
            if any(parse.has_phrase(norm, parse.normalize(p)) for p in intent.phrases):
                self._intent(intent)
                return Heard(intent=name, moved=True)
        own = self.state.slots
        changed: dict[str, Any] = {}
        for slot_name, spec in self._slot_specs.items():
            value = own.get(slot_name, spec).read(text, strict=slot_name not in own)
            if value is not None and self.slots.get(slot_name) != value:
                changed[slot_name] = value
        return self.set_slots(changed)

    def set_slots(self, values: dict[str, Any]) -> Heard:
        """New slot values (from the user's words or the model's set_slots call) and their transitions."""
        changed = {k: v for k, v in values.items() if v is not None and self.slots.get(k) != v}
        self.slots.update(changed)
        before = self.path
        self._advance(set(changed))
        return Heard(changed=changed, moved=self.path != before)

    def tool_done(self, tool: str, ok: bool, result: Any = None) -> bool:
        """A tool returned; takes `when: tool:NAME` transitions. Returns whether the state changed."""
        if not ok:
            return False
        if self.state.action == tool:
            self.actions_done[self.path] = {k: v for k, v in self.slots.items() if v is not None}
        due = self._due(f"tool:{tool}")
        if due is not None and isinstance(result, dict):
            self.slots.update({k: result[k] for k in due.save if k in result})
        return self._take(due)

    def declined(self, tool: str) -> bool:
        return self._take(self._due(f"declined:{tool}"))

    def choose(self, step: str) -> bool:
        """The model's go_to_step choice; only the current state's `when: llm` targets are allowed."""
        return self._take(next((t for t in self.llm_choices() if t.to == step), None))

    def _intent(self, intent: IntentSpec) -> None:
        if intent.to == START:
            self.slots.clear()
            self.actions_done.clear()
        self.stack = [Frame(self.spec, self.spec.start if intent.to == START else intent.to)]

    def _due(self, when: str) -> TransitionSpec | None:
        return next((t for t in self.state.transitions if t.when == when), None)

    def _take(self, transition: TransitionSpec | None) -> bool:
        if transition is not None:
            self._enter(transition.to)
        return transition is not None

    def _advance(self, changed: set[str]) -> None:
        for hop in range(MAX_CHAIN):
            st = self.state
            filled = all(self.slots.get(n) is not None for n, s in st.slots.items() if s.required)
            # the first state needs a new value; states reached in the same input pass if already
            # filled (so a changed party size in a modify loop goes on to confirm, not to "time?")
            fresh = hop > 0 or bool(changed & set(st.slots))
            due = next((t for t in st.transitions
                        if (t.when == "filled" and filled and fresh) or (t.when == "changed" and changed)), None)
            if due is None or due.to == self.name:  # staying put: its action is due again anyway
                return
            self._enter(due.to)

    def _enter(self, name: str) -> None:
        self.frame.state = name
        for _ in range(MAX_CHAIN):
            st = self.state
            if st.flow:
                sub = self.frame.flow.subflows[st.flow]
                self.stack.append(Frame(sub, sub.start))
            elif st.final and len(self.stack) > 1:
                self.stack.pop()
                done = next((t for t in self.state.transitions if t.when == "done"), None)
                if done is None:
                    return
                self.frame.state = done.to
            else:
                return


def flow_tools(flow: FlowRun) -> list[Tool]:
    """The built-in tools of the current state: go_to_step (its `when: llm` targets) and set_slots
    (its free-text slots). They run on the event loop and change the flow directly."""
    out = []
    if choices := flow.llm_choices():
        steps = tuple(c.to for c in choices)

        async def go_to_step(step: str) -> dict:
            flow.choose(step)
            return {"step": step}

        go_to_step.__annotations__ = {"step": Literal[steps], "return": dict}  # the allowed targets only
        go_to_step.__doc__ = "Go to another step of the conversation.\n\nArgs:\n    step: " + "; ".join(
            f"{c.to}: {c.description}" for c in choices)
        out.append(tool(go_to_step))
    if text_slots := flow.model_slots():
        async def save(**values: Any) -> dict:
            flow.set_slots(given := {k: v for k, v in values.items() if v})
            return {"saved": given}

        model = create_model("set_slots_args", __config__=ConfigDict(extra="ignore"),
                             **{n: (str | None, Field(None, description=s.description)) for n, s in text_slots.items()})
        schema = model.model_json_schema()
        out.append(Tool(name=SET_SLOTS, description="Save details the user gave.", parameters=schema, fn=save,
                        validate=lambda args: model.model_validate(args).model_dump()))
    return out
