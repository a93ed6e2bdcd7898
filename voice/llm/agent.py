"""The agent's mind for one conversation: flow, tools, memory; one user turn in, speech and events out.

The Conversation calls, per user turn: `hear(text)` (sync: the turn is in the history at once),
then iterates `reply(turn)`, which yields text to speak (str) and events (voice.llm.events:
ToolStarted, ToolFinished, StateChanged) in the order they happen, then `finished(spoken)` or, on barge-in,
`interrupted(heard)`.

A turn, in order:
1. The user's words go to the flow (global intents, slot values, transitions) and answer a pending
   yes/no question of a consequential tool (yes: it runs; no: `when: declined` transition).
2. What to say: the new state's `ask` when the flow moved on the user's answer (no LLM round: no
   latency, no drift), a consequential action's confirmation question, or the LLM with the state's
   prompt and tools. Prose streams to TTS at once (SpeechGate); calls are parsed, validated and run
   concurrently under timeouts (a filler line when slow); results go back as text for a follow-up.
3. Barge-in (`interrupted(heard)`): the turn is truncated to what was heard. Flow moves made by
   tools or the model in this turn stay only if the user heard some of what followed them; else the
   flow goes back to where the user's words left it (a confirmed tool that already ran is
   journaled, so a second yes does not run it twice). User-given slots stay: the user said them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from voice.agents.slots import normalize, parse_yes_no
from voice.llm import toolcalls
from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.events import AgentEvent, StateChanged, ToolFinished, ToolStarted
from voice.llm.flows import GO_TO_STEP, SET_SLOTS, FlowRun, FlowSpec, flow_tools
from voice.llm.memory import Memory
from voice.llm.toolcalls import ResultStyle, SpeechGate
from voice.llm.tools import Tool, Toolbox, ToolCall, ToolOutcome, check_arguments, error_outcome

log = logging.getLogger(__name__)

AgentItem = str | AgentEvent


class _Line(str):
    """A sentence of the agent's own (ask, filler, question), spaced from what came before."""




@dataclass(frozen=True)
class AgentOptions:
    result_style: ResultStyle = "system"
    filler_after_s: float = 1.0          # a tool slower than this gets a filler line
    filler: str = "One moment."
    max_tool_rounds: int = 2             # LLM rounds per turn whose calls are run
    route_tools: bool = True             # offer a tool with triggers only when its triggers were said
    #: Messages of history shown in a round that offers tools (None: the whole window). Qwen2.5-0.5B
    #: answers from (or echoes) earlier turns instead of calling a tool when it sees them.
    tool_history: int | None = 1
    fallback: str = "Sorry, I did not catch that. Could you say it again?"


@dataclass
class _Turn:
    text: str
    notes: list[dict[str, Any]] = field(default_factory=list)  # tool results for the model, this turn
    spoken: str = ""
    snapshot: Any = None          # the flow after the user's words, before tools/model moved it
    moved_at: int | None = None   # words spoken when a tool/model moved the flow
    asked_at: int | None = None   # words spoken before a confirmation question
    rounds: int = 0               # LLM rounds that called tools
    used: set[str] = field(default_factory=set)  # tools called


class Agent:
    """One conversation's agent; see the module docstring. Use from the event loop."""

    def __init__(self, llm: LlmEngine, *, name: str = "plain", system_prompt: str = "",
                 generation: GenerationOptions | None = None, toolbox: Toolbox | None = None,
                 flow: FlowSpec | None = None, memory: Memory | None = None,
                 options: AgentOptions | None = None,
                 on_close: list[Callable[[], Awaitable[None]]] | None = None):
        self.llm, self.name = llm, name
        self.system_prompt = system_prompt
        self.generation = generation or GenerationOptions()
        self.toolbox = toolbox or Toolbox()
        self.flow = FlowRun(flow) if flow else None
        self.memory = memory or Memory(llm)
        self.options = options or AgentOptions()
        self._on_close = on_close or []
        wanted = {n for n in (flow.tool_names() if flow else ()) if "*" not in n}
        if flow is not None and (missing := wanted - set(self.toolbox.names)):
            raise ValueError(f"flow {flow.name!r} uses tools that do not exist: {sorted(missing)}")
        self._turn: _Turn | None = None
        self._pending: ToolCall | None = None        # consequential call waiting for the user's yes
        self._journal: dict[str, ToolOutcome] = {}   # consequential calls already done
        self._shown: tuple[str, dict[str, Any]] | None = None
        self._calls = 0
        self._last_outcomes: list[ToolOutcome] = []
        self._used_last: set[str] = set()  # tools called in the previous turn
        #: Cleared while a reply is prepared ahead of a turn that may not happen (preemptive
        #: generation): the model may talk, but no tool runs until the turn is confirmed.
        self.may_act = asyncio.Event()
        self.may_act.set()

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.memory.messages

    def dtmf_text(self, digits: str) -> str:
        return self.flow.dtmf_text(digits) if self.flow else digits

    # ------------------------------------------------------------ turn lifecycle

    def hear(self, text: str) -> None:
        """A user turn begins (sync, so a barge-in right after still finds it in the history)."""
        self.memory.cancel_folding()
        self.memory.add("user", text)
        self._turn = _Turn(text)

    async def reply(self, turn: int) -> AsyncIterator[AgentItem]:
        t = self._turn
        assert t is not None, "hear() first"
        boundary = False  # the next LLM delta starts a new sentence (after a line or a new round)
        async for item in self._respond(t, turn):
            if isinstance(item, str):
                gap = bool(t.spoken) and not t.spoken[-1].isspace() and not item[:1].isspace()
                if isinstance(item, _Line):
                    boundary = True
                    if not item.strip():
                        continue
                    item = " " + item if gap else item
                elif item:
                    item, boundary = (" " + item if gap and boundary else item), False
                t.spoken += item
            yield item
        if not t.spoken.strip():
            t.spoken = self.options.fallback
            yield _Line(self.options.fallback)

    def finished(self, spoken: str) -> None:
        """The reply was spoken to its end: the turn's tool notes and text join the history."""
        if self._turn is not None:
            self.memory.extend(self._turn.notes)
            self._used_last, self._turn = self._turn.used, None
        if spoken:
            self.memory.add("assistant", spoken)

    def interrupted(self, heard: str) -> None:
        """Barge-in: keep what was heard; undo flow moves the user never heard about."""
        t, self._turn = self._turn, None
        heard_words = len(heard.split())
        if t is not None:
            self._used_last = t.used
            if t.moved_at is not None and heard_words <= t.moved_at and self.flow and t.snapshot is not None:
                log.info("barge-in before the result was heard: flow back to %s", self.flow.path)
                self.flow.restore(t.snapshot)
            else:
                self.memory.extend(t.notes)
            if self._pending is not None and t.asked_at is not None and heard_words <= t.asked_at:
                self._pending = None  # the question was never heard, so no answer can be a yes to it
        if heard:
            self.memory.add("assistant", heard)

    def checkpoint(self) -> Any:
        """What hear() and a reply change before any tool runs, to undo a turn that did not happen."""
        return (list(self.memory.messages), self.flow.snapshot() if self.flow else None, self._pending,
                self._turn, self._shown, self._calls, list(self._last_outcomes), set(self._used_last))

    def rollback(self, checkpoint: Any) -> None:
        messages, flow, self._pending, self._turn, self._shown, self._calls, outcomes, used = checkpoint
        self.memory.messages[:] = messages
        if self.flow is not None:
            self.flow.restore(flow)
        self._last_outcomes, self._used_last = outcomes, used

    def after_reply(self) -> None:
        self.memory.start_folding()

    def state_events(self) -> list[StateChanged]:
        """A state_changed event when the state or slots differ from what clients were last told."""
        now = (self.flow.path, dict(self.flow.slots)) if self.flow else None
        if now is None or now == self._shown:
            return []
        self._shown = now
        return [StateChanged(state=now[0], slots=now[1])]

    async def aclose(self) -> None:
        await self.memory.aclose()
        for close in self._on_close:
            with contextlib.suppress(Exception):
                await close()

    # ------------------------------------------------------------ one turn

    async def _respond(self, t: _Turn, turn: int) -> AsyncIterator[AgentItem]:
        pending, self._pending = self._pending, None
        flow = self.flow
        heard = flow.hear(t.text) if flow else None
        for event in self.state_events():
            yield event
        if flow:
            t.snapshot = flow.snapshot()
        if pending is not None and not (heard and (heard.changed or heard.intent)):
            answer = parse_yes_no(t.text)
            if answer is not None:
                async for item in self._answer(t, turn, pending, answer):
                    yield item
                return
        if flow and heard and heard.moved:
            lines = [flow.spec.intents[heard.intent].say if heard.intent else None, flow.ask()]
            for line in filter(None, lines):
                yield _Line(line)
            if any(lines):
                return
        if heard and (heard.moved or heard.changed) and (action := self._action(turn)) is not None:
            async for item in self._propose(t, turn, action):
                yield item
            return
        said = len(t.spoken)
        async for item in self._llm(t, turn, self._offered(t.text)):
            yield item
        if self._pending is None and (action := self._action(turn)) is not None:
            async for item in self._propose(t, turn, action):  # answered a side question: back to the point
                yield item
        elif flow and flow.state.slots and "?" not in t.spoken[said:] and (ask := flow.ask()):
            yield _Line(ask)  # the model lost the thread: ask the state's question again

    async def _answer(self, t: _Turn, turn: int, call: ToolCall, yes: bool) -> AsyncIterator[AgentItem]:
        """The user's yes or no to a consequential call."""
        before = self.flow.path if self.flow else None
        if yes:
            journaled = self._journal.get(_key(call))
            async for item in self._run(t, turn, [call], [journaled] if journaled else None, announce=False):
                yield item
        else:
            outcome = error_outcome(call, "declined", "the user said no")
            t.notes += toolcalls.result_messages([outcome], self.options.result_style)
            yield ToolFinished(turn=turn, id=call.id, ok=False, result=outcome.result)
            if self.flow and self.flow.declined(call.name):
                for event in self.state_events():
                    yield event
        async for item in self._after_tools(t, turn, before, []):
            yield item

    def _action(self, turn: int) -> ToolCall | None:
        """The current state's action as a valid call with the slot values, when it is due."""
        args = self.flow.pending_action() if self.flow else None
        tool = self.toolbox.get(self.flow.state.action or "") if self.flow else None
        if args is None or tool is None:
            return None
        call = check_arguments(tool, ToolCall("", tool.name, args))
        if isinstance(call, ToolOutcome):
            return None  # slots missing: the model asks for them
        return replace(call, id=self._next_id(turn))

    async def _propose(self, t: _Turn, turn: int, call: ToolCall) -> AsyncIterator[AgentItem]:
        """Do the state's action: asked first if consequential, else run."""
        assert self.flow is not None
        tool = self.toolbox.get(call.name)
        assert tool is not None
        if tool.consequential:
            async for item in self._ask_first(t, turn, call):
                yield item
        else:
            before = self.flow.path
            async for item in self._run(t, turn, [call]):
                yield item
            async for item in self._after_tools(t, turn, before, []):
                yield item

    async def _llm(self, t: _Turn, turn: int, tools: list[Tool]) -> AsyncIterator[AgentItem]:
        """One LLM round: prose is spoken as it streams; calls it makes are run (or asked about)."""
        yield _Line("")  # a new round: its text is a new sentence
        gate = SpeechGate()
        options = replace(self.generation, tools=[x.schema() for x in tools] or None)
        messages = self._messages(t, self.options.tool_history if tools else None, bool(tools or t.notes))
        async with contextlib.aclosing(self.llm.stream_chat(messages, options)) as deltas:
            async for delta in deltas:
                if speak := gate.feed(delta):
                    yield speak
        tail, held = gate.finish()
        if tail.strip():
            yield tail
        parsed = toolcalls.parse_reply(held) if held else None
        if parsed is None or not parsed.calls or not tools:
            if parsed and parsed.prose and not toolcalls.looks_like_code(parsed.prose):
                yield parsed.prose  # prose around a block that was not a call (code, stray JSON)
            elif held:
                log.info("held reply was not a usable tool call: %.120r", held)
            return
        t.rounds += 1
        before = self.flow.path if self.flow else None
        calls = [ToolCall(self._next_id(turn), name, args) for name, args in parsed.calls]
        if asked := next((c for c in calls if (x := self.toolbox.get(c.name)) and x.consequential), None):
            async for item in self._ask_first(t, turn, asked):
                yield item
            if self._pending is not None:
                return
        else:
            async for item in self._run(t, turn, calls):
                yield item
        retry = toolcalls.needs_retry(self._last_outcomes) and t.rounds < self.options.max_tool_rounds
        async for item in self._after_tools(t, turn, before if not asked else None, tools if retry else []):
            yield item

    async def _after_tools(self, t: _Turn, turn: int, before: str | None,
                           tools: list[Tool]) -> AsyncIterator[AgentItem]:
        """After tool results: the new state's question or action if the flow moved, else the model's
        follow-up reply (with the tools again only when it can fix a bad call)."""
        if self.flow and before is not None and self.flow.path != before:
            if ask := self.flow.ask():
                yield _Line(ask)
                return
            if (action := self._action(turn)) is not None:
                async for item in self._propose(t, turn, action):
                    yield item
                return
        async for item in self._llm(t, turn, tools):
            yield item

    async def _ask_first(self, t: _Turn, turn: int, call: ToolCall) -> AsyncIterator[AgentItem]:
        """A consequential call: validated, announced, then the yes/no question; it runs next turn."""
        tool = self.toolbox.get(call.name)
        assert tool is not None
        checked = check_arguments(tool, call)
        yield _announce(turn, call, checked)
        if isinstance(checked, ToolOutcome):
            self._last_outcomes = [checked]
            t.notes += toolcalls.result_messages([checked], self.options.result_style)
            yield ToolFinished(turn=turn, id=call.id, ok=False, result=checked.result)
            return
        self._pending = checked
        t.asked_at = len(t.spoken.split())
        yield _Line(tool.confirmation(checked.arguments))

    async def _run(self, t: _Turn, turn: int, calls: list[ToolCall], outcomes: list[ToolOutcome] | None = None,
                   *, announce: bool = True) -> AsyncIterator[AgentItem]:
        """Run calls concurrently (a filler line if slow), report results, apply them to the flow."""
        if outcomes is None:
            box = Toolbox([*self.toolbox.pick(["*"]), *(flow_tools(self.flow) if self.flow else [])])
            for c in calls if announce else []:
                tool = box.get(c.name)
                yield _announce(turn, c, check_arguments(tool, c) if tool else c)
            await self.may_act.wait()  # a prepared reply runs no tool before its turn is confirmed
            said = " ".join(m["content"] for m in self.history[-8:] if m["role"] == "user")
            tasks = [asyncio.ensure_future(box.run(c, said)) for c in calls]
            try:
                _, slow = await asyncio.wait(tasks, timeout=self.options.filler_after_s)
                if slow:
                    yield _Line(self.options.filler)
                outcomes = list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()  # barge-in: stop what is still running
        self._last_outcomes = outcomes
        t.used |= {o.call.name for o in outcomes}
        moved = False
        for o in outcomes:
            yield ToolFinished(turn=turn, id=o.call.id, ok=o.ok, result=o.result)
            tool = self.toolbox.get(o.call.name)
            if o.ok and tool is not None and tool.consequential:
                self._journal[_key(o.call)] = o
            builtin = o.call.name in (GO_TO_STEP, SET_SLOTS)
            if self.flow and not builtin:
                moved |= self.flow.tool_done(o.call.name, o.ok, o.result)
            moved |= builtin and o.ok
        if moved:
            t.moved_at = len(t.spoken.split())
        for event in self.state_events():
            yield event
        reported = [o for o in outcomes if o.call.name not in (GO_TO_STEP, SET_SLOTS) or not o.ok]
        t.notes += toolcalls.result_messages(reported, self.options.result_style)

    # ------------------------------------------------------------ prompt and tools

    def _messages(self, t: _Turn, history: int | None = None, tool_round: bool = False) -> list[dict[str, Any]]:
        """System prompt, recent history (the last `history` messages if given), this turn's notes."""
        if self.flow:
            system = self.flow.prompt(self.memory.profile, self.memory.summary, tools=tool_round)
        else:
            profile = "; ".join(f"{k}: {v}" for k, v in self.memory.profile.items())
            extra = [f"About the user: {profile}" if profile else "",
                     f"Earlier in this conversation: {self.memory.summary}" if self.memory.summary else ""]
            system = "\n".join(p for p in [self.system_prompt, *extra] if p)
        recent = self.memory.window()
        if self.flow and self.flow.state.history is not None:
            history = self.flow.state.history if history is None else min(history, self.flow.state.history)
        if history is not None:
            recent = recent[-history:] if history else []
        return [{"role": "system", "content": system}, *recent, *t.notes]

    def _offered(self, text: str) -> list[Tool]:
        """The tools shown to the model this turn: the state's, minus those whose triggers were not
        said (a tool used last turn stays: "and in Berlin?" follows a weather question)."""
        names = self.flow.state.tools if self.flow else self.toolbox.names
        words = normalize(text)
        tools = [x for x in self.toolbox.pick(names) if not (self.options.route_tools and x.triggers)
                 or x.name in self._used_last or any(re.search(rf"\b{re.escape(w)}", words) for w in x.triggers)]
        return tools + (flow_tools(self.flow) if self.flow else [])

    def _next_id(self, turn: int) -> str:
        self._calls += 1
        return f"call-{turn}-{self._calls}"


def _announce(turn: int, call: ToolCall, checked: ToolCall | ToolOutcome) -> ToolStarted:
    """The tool_call event, with the arguments as the tool will see them when they are valid."""
    shown = checked if isinstance(checked, ToolCall) else call
    return ToolStarted(turn=turn, id=call.id, name=call.name, arguments=shown.arguments)


def _key(call: ToolCall) -> str:
    return f"{call.name}:{json.dumps(call.arguments, sort_keys=True)}"
