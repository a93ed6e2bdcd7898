"""The agent's mind for one conversation: flow, tools, memory; one user turn in, speech and events out.

The Conversation calls, per user turn: `hear(text)` (sync: the turn is in the history at once),
then iterates `reply(turn)`, which yields text to speak (str) and events (voice.llm.events:
ToolStarted, ToolFinished, StateChanged) in the order they happen, then `finished(spoken)` or, on barge-in,
`interrupted(heard)`.

A turn, in order:
1. The user's words go to the flow (global intents, slot values, transitions), answer a pending
   yes/no question of a consequential tool (yes: it runs; no: `when: declined` transition), or give
   the time/day a call was waiting for.
2. What to say: the new state's `ask` when the flow moved on the user's answer (no LLM round: no
   latency, no drift), a consequential action's confirmation question, or the LLM with the state's
   prompt and tools. Prose streams to TTS once its sentence passed the SpeechGuard (no internal
   text, no echo, no claimed action that no tool did); calls are constrained to valid JSON
   (GenerationOptions.callable_tools), their time and day arguments re-read from the user's words
   (grounding.py), run concurrently under timeouts. Outcomes are spoken in fixed words (replies.py):
   a `say` template, a question for a missing argument, an apology; only a result without a
   template goes back to the model, as facts in its system prompt, for a round without tools.
3. Barge-in (`interrupted(heard)`): the turn is truncated to what was heard. Flow moves made by
   tools or the model in this turn stay only if the user heard some of what followed them; else the
   flow goes back to where the user's words left it (a confirmed tool that already ran is
   journaled, so a second yes does not run it twice). User-given slots stay: the user said them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from voice.agents.dates import Clock
from voice.agents.slots import parse_yes_no
from voice.llm import arithmetic, replies, rounds, toolcalls
from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.events import AgentEvent, Line, StateChanged, ToolFinished
from voice.llm.flows import GO_TO_STEP, SET_SLOTS, FlowRun, FlowSpec, Heard, flow_tools
from voice.llm.grounding import asks_live_data, correct, ground, is_action_request, is_question, is_request, unsaid
from voice.llm.guard import SpeechGuard
from voice.llm.memory import Memory
from voice.llm.rounds import AgentOptions, Turn, Waiting
from voice.llm.toolcalls import SpeechGate
from voice.llm.tools import Tool, Toolbox, ToolCall, ToolOutcome, check_arguments, error_outcome

log = logging.getLogger(__name__)

AgentItem = str | AgentEvent
BUILTIN = (GO_TO_STEP, SET_SLOTS)
CORRECTION = re.compile(r"^\W*(?:no|nope|sorry|oops|actually|wait)\b|\b(?:make it|change it to|i meant|i mean)\b",
                        re.I)


class Agent:
    """One conversation's agent; see the module docstring. Use from the event loop."""

    def __init__(self, llm: LlmEngine, *, name: str = "plain", system_prompt: str = "",
                 generation: GenerationOptions | None = None, toolbox: Toolbox | None = None,
                 flow: FlowSpec | None = None, memory: Memory | None = None,
                 options: AgentOptions | None = None,
                 on_close: list[Callable[[], Awaitable[None]]] | None = None, clock: Clock | None = None):
        """`clock`: what "now" is for times and days the user says (default: the local time)."""
        self.llm, self.name = llm, name
        self.system_prompt = system_prompt
        self.generation = generation or GenerationOptions()
        self.toolbox = toolbox or Toolbox()
        self.flow = FlowRun(flow) if flow else None
        self.memory = memory or Memory(llm)
        self.options = options or AgentOptions()
        self.clock: Clock = clock or datetime.now
        self._on_close = on_close or []
        wanted = {n for n in (flow.tool_names() if flow else ()) if "*" not in n}
        if flow is not None and (missing := wanted - set(self.toolbox.names)):
            raise ValueError(f"flow {flow.name!r} uses tools that do not exist: {sorted(missing)}")
        self._turn: Turn | None = None
        self._pending: ToolCall | None = None        # consequential call waiting for the user's yes
        self._waiting: Waiting | None = None        # call waiting for an argument the user was asked for
        self._journal: dict[str, ToolOutcome] = {}   # consequential calls already done
        self._shown: tuple[str, dict[str, Any]] | None = None
        self._calls = 0
        self._last_outcomes: list[ToolOutcome] = []
        self._used_last: set[str] = set()  # tools called in the previous turn
        self._last_value: float | None = None  # the last sum worked out (arithmetic.py)
        self._last_slots: set[str] = set()     # slots the previous turn filled (for corrections)
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
        self._turn = Turn(text)

    async def reply(self, turn: int) -> AsyncIterator[AgentItem]:
        t = self._turn
        assert t is not None, "hear() first"
        boundary = False  # the next LLM delta starts a new sentence (after a line or a new round)
        async for item in self._respond(t, turn):
            if isinstance(item, str):
                gap = bool(t.spoken) and not t.spoken[-1].isspace() and not item[:1].isspace()
                if isinstance(item, Line):
                    boundary = True
                    if not item.strip():
                        continue
                    item = Line(" " + item) if gap else item  # still a Line: the speaker says it at once
                elif item:
                    item, boundary = (" " + item if gap and boundary else item), False
                t.spoken += item
            yield item
        if (last := replies.closing_line(t, self.options.fallback)) is not None:
            t.spoken += (" " if t.spoken.strip() else "") + last
            yield Line(last)

    def finished(self, spoken: str) -> None:
        """The reply was spoken to its end: its text joins the history (results live in the words)."""
        if self._turn is not None:
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
            if self._pending is not None and t.asked_at is not None and heard_words <= t.asked_at:
                self._pending = None  # the question was never heard, so no answer can be a yes to it
        if heard:
            self.memory.add("assistant", heard)

    def checkpoint(self) -> Any:
        """What hear() and a reply change before any tool runs, to undo a turn that did not happen."""
        return (list(self.memory.messages), self.flow.snapshot() if self.flow else None, self._pending,
                self._waiting, self._turn, self._shown, self._calls, list(self._last_outcomes),
                set(self._used_last), self._last_value, set(self._last_slots))

    def rollback(self, checkpoint: Any) -> None:
        (messages, flow, self._pending, self._waiting, self._turn, self._shown, self._calls, outcomes,
         used, self._last_value, self._last_slots) = checkpoint
        self.memory.messages[:] = messages
        if self.flow is not None:
            self.flow.restore(flow)
        self._last_outcomes, self._used_last = outcomes, used

    def after_reply(self) -> None:
        self.memory.start_folding()

    async def warm_up(self) -> None:
        """Evaluate a plain round's and a tool round's prompt once before serving (rounds.warm_up)."""
        t, state_tools = Turn("Hello."), self._state_tools()
        self.memory.add("user", t.text)
        try:
            await rounds.warm_up(self.llm, [rounds.round_request(
                self.flow, self.memory, self.system_prompt, self.generation, self.options, t, tools, state_tools)
                for tools in ([], state_tools)[:1 + bool(state_tools)]])
        finally:
            self.memory.messages.pop()

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

    async def _respond(self, t: Turn, turn: int) -> AsyncIterator[AgentItem]:
        pending, self._pending = self._pending, None
        waiting, self._waiting = self._waiting, None
        flow = self.flow
        corrected = self._correction(t.text)  # "no, make it six": the slot just given, not this state's
        heard = corrected or (flow.hear(t.text) if flow else None)
        self._last_slots = set(heard.changed) if heard else set()
        for event in self.state_events():
            yield event
        if flow:
            t.snapshot = flow.snapshot()
        user_moved = bool(heard and (heard.changed or heard.intent))
        side = None  # a consequential call still waiting for its yes while a side question is answered
        if pending is not None and not user_moved:
            if (fixed := self._corrected(pending, t.text)) is not None:  # "no, make it four"
                async for item in self._do(t, turn, [fixed]):
                    yield item
                return
            if is_question(t.text):
                side = pending
            elif (answer := parse_yes_no(t.text)) is not None:
                async for item in self._answer(t, turn, pending, answer):
                    yield item
                return
        if waiting is not None and not user_moved and (call := self._completed(waiting, t.text)) is not None:
            async for item in self._do(t, turn, [call]):
                yield item
            return
        if flow and heard and not (heard.moved or heard.changed) and (line := replies.out_of_range(
                flow.state.slots, t.text)):
            yield Line(line)
            heard.moved = True  # ...and the question again
        if flow and heard and (heard.moved or (corrected and not self._action(turn))):
            lines = [flow.spec.intents[heard.intent].say if heard.intent else None, flow.ask()]
            for line in filter(None, lines):
                yield Line(line)
            if any(lines):
                return
        if heard and (heard.moved or heard.changed) and (action := self._action(turn)) is not None:
            async for item in self._do(t, turn, [action]):
                yield item
            return
        said, tools = len(t.spoken), self._offered(t.text)
        t.offered_action = any(x.consequential for x in tools)
        # a call is a must only when the user's own words named the tool's topic: a follow-up that
        # is offered the last turn's tool ("what is two plus three?" after the weather) stays free
        named = any(rounds.triggered(x, t.text) for x in tools)  # a tool's topic is in the user's words
        t.must_call = named and is_request(t.text)
        if self.options.abilities and not named and (
                asks_live_data(t.text) or (self.options.refuse_actions and is_action_request(t.text))):
            yield Line(f"{replies.CANNOT} {self.options.abilities}")  # it could only make it up, or claim it
            if side is None and flow and (ask := flow.ask()):
                yield Line(ask)
        elif not named and (sum_ := arithmetic.solve(t.text, self._last_value)):
            self._last_value = sum_.value  # "and if I take away thirty from that?"
            yield Line(sum_.spoken)
            if side is None:
                return
        else:
            async for item in self._llm(t, turn, tools):
                yield item
        if side is not None and self._pending is None and (tool := self.toolbox.get(side.name)):
            self._pending, t.asked_at = side, len(t.spoken.split())  # back to the question it interrupted
            yield Line(tool.confirmation(side.arguments))
        elif self._pending is None and self._waiting is None and (action := self._action(turn)) is not None:
            async for item in self._do(t, turn, [action]):  # answered a side question: back to the point
                yield item
        elif flow and flow.state.slots and "?" not in t.spoken[said:] and (ask := flow.ask()):
            yield Line(ask)  # the model lost the thread (or was not asked): ask the state's question again

    async def _answer(self, t: Turn, turn: int, call: ToolCall, yes: bool) -> AsyncIterator[AgentItem]:
        """The user's yes or no to a consequential call."""
        before = self.flow.path if self.flow else None
        if yes:
            journaled = self._journal.get(rounds.call_key(call))
            async for item in self._run(t, turn, [call], [journaled] if journaled else None, fresh=False):
                yield item
        else:
            outcome = error_outcome(call, "declined", "the user said no")
            self._last_outcomes = [outcome]
            yield ToolFinished(turn=turn, id=call.id, ok=False, result=outcome.result)
            if self.flow and self.flow.declined(call.name):
                for event in self.state_events():
                    yield event
        async for item in self._after_tools(t, turn, before):
            yield item

    def _correction(self, text: str) -> Heard | None:
        """A correction of the slot(s) the previous turn filled ("We are four." - "No, make it six."),
        read with those slots' own parsers; None when it is not one."""
        if not (self.flow and self._last_slots and CORRECTION.search(text)):
            return None
        specs = self.flow.spec.all_slots()
        values = {n: v for n in self._last_slots if n in specs and (v := specs[n].read(text, strict=False)) is not None}
        return self.flow.set_slots(values) if values else None

    def _corrected(self, call: ToolCall, text: str) -> ToolCall | None:
        tool = self.toolbox.get(call.name)
        return correct(tool, call, text, self.clock()) if tool and parse_yes_no(text) is not True else None

    def _completed(self, waiting: Waiting, text: str) -> ToolCall | None:
        """The waiting call with the argument the user just gave, or None (they said something else)."""
        tool = self.toolbox.get(waiting.call.name)
        call, missing = ground(tool, waiting.call, f"{waiting.said} {text}", self.clock()) if tool else (None, "")
        return replace(call, id=waiting.call.id) if call is not None and missing is None else None

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

    async def _llm(self, t: Turn, turn: int, tools: list[Tool]) -> AsyncIterator[AgentItem]:
        """One LLM round: checked prose is spoken as it streams; calls it makes are run (or asked about)."""
        yield Line("")  # a new round: its text is a new sentence
        options, messages = rounds.round_request(self.flow, self.memory, self.system_prompt, self.generation,
                                          self.options, t, tools, self._state_tools())
        gate, filler = SpeechGate(), self.options.call_filler if tools else ""
        said = " ".join(m["content"] for m in self.history[-8:] if m["role"] == "user")
        if filler and t.must_call and not t.filled and not any(x.consequential for x in tools):
            t.filled = True  # the reply will be a lookup: say so now, not ~1 s later once its name is written
            yield Line(filler)
        guard = SpeechGuard(replies.internal_texts(messages, options.tools), user_text=t.text, acted=t.acted)
        async with contextlib.aclosing(self.llm.stream_chat(messages, options)) as deltas:
            async for delta in deltas:
                if speak := guard.feed(gate.feed(delta)):
                    yield speak
                if not t.filled and (line := rounds.call_filler(self.toolbox, gate.held, filler, said)):
                    t.filled = True
                    yield Line(line)
        tail, held = gate.finish()
        parsed = toolcalls.parse_reply(held) if held else None
        if parsed is None or not parsed.calls or not tools:
            if parsed and parsed.prose and not toolcalls.looks_like_code(parsed.prose):
                tail += " " + parsed.prose  # prose around a block that was not a call (code, stray JSON)
            elif held:
                log.info("held reply was not a usable tool call: %.120r", held)
        if speak := guard.feed(tail) + guard.finish():
            yield speak
        t.dropped += guard.dropped
        if guard.dropped:
            log.info("not spoken: %s", guard.dropped)
        if parsed is not None and parsed.calls and tools:
            # only the tools offered this turn: unconstrained output (no grammar, or a bare call the
            # lazy grammar never saw) may name another tool of the agent ("add_reminder" for an umbrella)
            offered = {x.name for x in tools}
            calls = [ToolCall(self._next_id(turn), name, args) for name, args in parsed.calls if name in offered]
            async for item in self._do(t, turn, calls, grounded=False) if calls else self._llm(t, turn, []):
                yield item

    async def _do(self, t: Turn, turn: int, calls: list[ToolCall], *, grounded: bool = True
                  ) -> AsyncIterator[AgentItem]:
        """Calls to make: times and days read from the user's words (unless `grounded`), then a
        consequential one is asked about, the others run, and their outcomes answered."""
        before = self.flow.path if self.flow else None
        said = " ".join(m["content"] for m in self.history[-8:] if m["role"] == "user")
        for i, call in enumerate(calls):
            tool = self.toolbox.get(call.name)
            if tool is None or grounded:
                continue
            if (name := unsaid(tool, call, said)) is not None:  # "Paris" for "is it cold?": never run
                if is_question(t.text):
                    yield Line(tool.question(name))
                else:  # a remark ("the weather has been lovely"), not a request: just answer it
                    async for item in self._llm(t, turn, []):
                        yield item
                return
            calls[i], missing = ground(tool, call, t.text, self.clock())
            if missing is not None:  # the user did not say when: ask, and keep the call for the answer
                self._waiting = Waiting(calls[i], missing, t.text)
                yield Line(tool.question(missing))
                return
        if asked := next((c for c in calls if (x := self.toolbox.get(c.name)) and x.consequential), None):
            async for item in self._ask_first(t, turn, asked):
                yield item
            if self._pending is not None:
                return
            before = None
        else:
            async for item in self._run(t, turn, calls):
                yield item
        async for item in self._after_tools(t, turn, before):
            yield item

    async def _after_tools(self, t: Turn, turn: int, before: str | None) -> AsyncIterator[AgentItem]:
        """After tool outcomes: the new state's question or action if the flow moved; else each
        outcome's fixed line, and a model round (without tools) for results that have none."""
        if self.flow and before is not None and self.flow.path != before:
            if ask := self.flow.ask():
                yield Line(ask)
                return
            if (action := self._action(turn)) is not None:
                async for item in self._do(t, turn, [action]):
                    yield item
                return
        told, to_model = False, []
        for o in self._last_outcomes:
            if o.call.name in BUILTIN and o.ok:
                continue
            line = replies.outcome_line(o, self.toolbox.get(o.call.name)) \
                if self.options.say_results or not o.ok else None
            if line:
                told = True
                yield Line(line)
            elif o.ok:
                to_model.append(o)
        if to_model or not told:
            t.facts = replies.facts(to_model)
            async for item in self._llm(t, turn, []):
                yield item

    async def _ask_first(self, t: Turn, turn: int, call: ToolCall) -> AsyncIterator[AgentItem]:
        """A consequential call: validated, announced, then the yes/no question; it runs next turn."""
        tool = self.toolbox.get(call.name)
        assert tool is not None
        checked = check_arguments(tool, call)
        yield rounds.announce(turn, call, checked)
        if isinstance(checked, ToolOutcome):
            self._last_outcomes = [checked]
            yield ToolFinished(turn=turn, id=call.id, ok=False, result=checked.result)
            return
        self._pending = checked
        t.asked_at = len(t.spoken.split())
        yield Line(tool.confirmation(checked.arguments))

    async def _run(self, t: Turn, turn: int, calls: list[ToolCall], outcomes: list[ToolOutcome] | None = None,
                   *, fresh: bool = True) -> AsyncIterator[AgentItem]:
        """Run calls concurrently (a filler line if slow), report results, apply them to the flow."""
        if outcomes is None:
            box = Toolbox([*self.toolbox.pick(["*"]), *(flow_tools(self.flow) if self.flow else [])])
            for c in calls if fresh else []:
                tool = box.get(c.name)
                yield rounds.announce(turn, c, check_arguments(tool, c) if tool else c)
            await self.may_act.wait()  # a prepared reply runs no tool before its turn is confirmed
            said = " ".join(m["content"] for m in self.history[-8:] if m["role"] == "user")
            tasks = [asyncio.ensure_future(box.run(c, said)) for c in calls]
            try:
                _, slow = await asyncio.wait(tasks, timeout=self.options.filler_after_s)
                if slow and not t.filled:
                    t.filled = True
                    yield Line(self.options.filler)
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
                self._journal[rounds.call_key(o.call)] = o
                t.acted = True
            builtin = o.call.name in BUILTIN
            if self.flow and not builtin:
                moved |= self.flow.tool_done(o.call.name, o.ok, o.result)
            moved |= builtin and o.ok
        if moved:
            t.moved_at = len(t.spoken.split())
        for event in self.state_events():
            yield event

    # ------------------------------------------------------------ prompt and tools

    def _state_tools(self) -> list[Tool]:
        names = self.flow.state.tools if self.flow else self.toolbox.names
        return self.toolbox.pick(names) + (flow_tools(self.flow) if self.flow else [])

    def _offered(self, text: str) -> list[Tool]:
        return rounds.offered(self._state_tools(), text, self._used_last, self.options.route_tools)

    def _next_id(self, turn: int) -> str:
        self._calls += 1
        return f"call-{turn}-{self._calls}"

