"""The pieces of one agent turn: the options, the per-turn record, and how an LLM round is asked.

Kept apart from agent.py (which decides *what* happens in a turn) because this is *how* the model
is prompted: which tools it sees (all of the state's, in one stable order, so the prompt prefix
and its KV cache are the same every tool round) and which it may call (those whose trigger words
were said: the grammar enforces it), how much history, and where the facts go.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from voice.agents.slots import normalize
from voice.llm import toolcalls
from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.events import ToolStarted
from voice.llm.flows import FlowRun
from voice.llm.memory import Memory
from voice.llm.tools import Tool, Toolbox, ToolCall, ToolOutcome


@dataclass(frozen=True)
class AgentOptions:
    filler_after_s: float = 1.0          # a tool slower than this gets a filler line
    filler: str = "One moment."
    #: Said as soon as the model starts writing a call of a tool that is not consequential (the
    #: call takes ~1 s to write on a CPU); "" for none.
    call_filler: str = "Let me check."
    route_tools: bool = True             # offer a tool with triggers only when its triggers were said
    #: Messages of history shown in a round that offers tools (None: the whole window). Qwen2.5-0.5B
    #: answers from (or echoes) earlier turns instead of calling a tool when it sees them.
    tool_history: int | None = 1
    constrain_calls: bool = True         # calls decoded under the tools' grammar (engines that can)
    say_results: bool = True             # a tool's `say` template answers, without a second LLM round
    #: What the agent can do, said after "Sorry, I can't do that." when asked about live data
    #: (weather, news, ...) that no tool of its own was asked for, or, with `refuse_actions`, to act
    #: in the world (send, call, book, order, play, ...); "" leaves both to the model.
    abilities: str = ""
    refuse_actions: bool = False         # off for an agent whose flow handles requests ("book a table")
    fallback: str = "Sorry, I did not catch that. Could you say it again?"


@dataclass
class Turn:
    text: str
    spoken: str = ""
    snapshot: Any = None          # the flow after the user's words, before tools/model moved it
    moved_at: int | None = None   # words spoken when a tool/model moved the flow
    asked_at: int | None = None   # words spoken before a confirmation question
    used: set[str] = field(default_factory=set)  # tools called
    facts: str = ""               # successful results the model answers from (system prompt)
    acted: bool = False           # an action tool succeeded: claims of having done it are true
    filled: bool = False          # a filler line was said
    offered_action: bool = False  # the model could have called an action (consequential) tool
    must_call: bool = False       # a question that a routed tool answers: the reply is a call
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (verdict, sentence) not spoken


@dataclass(frozen=True)
class Waiting:
    """A call that waits for the user to give one argument (asked for by name)."""

    call: ToolCall
    argument: str
    said: str  # the words of the turn that made the call



def round_request(flow: FlowRun | None, memory: Memory, system_prompt: str, generation: GenerationOptions,
                  options: AgentOptions, t: Turn, tools: list[Tool], state_tools: list[Tool]
                  ) -> tuple[GenerationOptions, list[dict[str, Any]]]:
    """The round's options and messages. A round that offers tools shows all of `state_tools`,
    always in the same order (one stable prompt prefix: its KV cache is reused turn after turn),
    and the grammar lets the reply call only the routed ones (`tools`)."""
    shown = state_tools if tools else []
    constrain = bool(tools) and options.constrain_calls
    request = replace(generation, tools=[x.schema() for x in shown] or None,
                      callable_tools=tuple(x.name for x in tools) if constrain else None,
                      require_call=constrain and t.must_call)
    history = options.tool_history if tools else None
    return request, messages(flow, memory, system_prompt, t.facts, history, bool(tools))


def messages(flow: FlowRun | None, memory: Memory, system_prompt: str, facts: str, history: int | None,
             tool_round: bool) -> list[dict[str, Any]]:
    """System prompt (+ this turn's facts), recent history (the last `history` messages if given)."""
    if flow:
        system = flow.prompt(memory.profile, memory.summary, tools=tool_round)
    else:
        profile = "; ".join(f"{k}: {v}" for k, v in memory.profile.items())
        extra = [f"About the user: {profile}" if profile else "",
                 f"Earlier in this conversation: {memory.summary}" if memory.summary else ""]
        system = "\n".join(p for p in [system_prompt, *extra] if p)
    if facts and not tool_round:
        system += "\n" + facts
    recent = memory.window()
    if flow and flow.state.history is not None:
        history = flow.state.history if history is None else min(history, flow.state.history)
    if history is not None:
        recent = recent[-history:] if history else []
    return [{"role": "system", "content": system}, *recent]


def offered(state_tools: list[Tool], text: str, used_last: set[str], route: bool) -> list[Tool]:
    """The tools the model may call this turn: the state's, minus those whose triggers were not
    said (a tool used last turn stays: "and in Berlin?" follows a weather question)."""
    return [x for x in state_tools if not (route and x.triggers) or x.name in used_last or triggered(x, text)]


def triggered(tool: Tool, text: str) -> bool:
    """One of the tool's trigger words begins a word of `text` ("rain" finds "raining")."""
    words = normalize(text)
    return any(re.search(rf"\b{re.escape(w)}", words) for w in tool.triggers)


def call_filler(toolbox: Toolbox, held: str, filler: str, said: str) -> str | None:
    """The filler for a call being written, once its tool is known to be an ordinary one and the
    values of its `grounded` arguments are written and were said by the user (a call on a value
    nobody said is never run: no "Let me check." before a plain answer)."""
    name = toolcalls.called_name(held) if held and filler else None
    tool = toolbox.get(name) if name else None
    if tool is None or tool.consequential:
        return None
    heard = normalize(said)
    for argument in tool.grounded:
        m = re.search(rf'"{re.escape(argument)}"\s*:\s*"([^"]*)"', held)
        if m is None or normalize(m.group(1)) not in heard:
            return None
    return filler


def announce(turn: int, call: ToolCall, checked: ToolCall | ToolOutcome) -> ToolStarted:
    """The tool_call event, with the arguments as the tool will see them when they are valid."""
    shown = checked if isinstance(checked, ToolCall) else call
    return ToolStarted(turn=turn, id=call.id, name=call.name, arguments=shown.arguments)


def call_key(call: ToolCall) -> str:
    return f"{call.name}:{json.dumps(call.arguments, sort_keys=True)}"


async def warm_up(llm: LlmEngine, requests: list[tuple[GenerationOptions, list[dict[str, Any]]]]) -> None:
    """Evaluate each request's prompt, one token each, so the first caller finds the plain round's
    and the tool round's prefix (system prompt + every tool) in llama.cpp's KV caches: a cold
    tool round costs ~2 s of prompt evaluation on a CPU."""
    for options, messages in requests:
        async with contextlib.aclosing(llm.stream_chat(messages, replace(options, max_tokens=1))) as deltas:
            async for _ in deltas:
                break
