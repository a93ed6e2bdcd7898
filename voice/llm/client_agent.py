"""An agent the client defines: its instructions and function tools (an OpenAI Realtime session).

The server runs none of the client's tools: a call the model makes is handed to the client (a
ToolStarted event; no ToolFinished follows), the reply ends there, and the client sends the output
back (`add_tool_output`) and asks for the next response, which answers from the outputs given
as facts in its system prompt, in a round without tools (`_results` says why). The history is the
client's conversation: every message keeps the item id the client knows it by, so it can be
deleted or truncated.

It offers what the reply speaker and the turn controller use of an Agent: hear, reply, finished,
interrupted, checkpoint/rollback, may_act, state_events, dtmf_text, after_reply, aclose, history.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from voice.llm import replies, toolcalls
from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.events import AgentEvent, ToolStarted
from voice.llm.toolcalls import SpeechGate
from voice.llm.tools import Toolbox

log = logging.getLogger(__name__)

#: Messages of history shown to the model (a Realtime conversation can grow without bound).
MAX_HISTORY_MESSAGES = 40


class ClientAgent:
    """See the module docstring. Use from the event loop."""

    name = "client"
    flow = None

    def __init__(self, llm: LlmEngine, generation: GenerationOptions, *, instructions: str = "",
                 tools: list[dict[str, Any]] | None = None, new_id: Callable[[str], str],
                 history: list[dict[str, Any]] | None = None):
        """`tools`: OpenAI function tools ({name, description, parameters}); `new_id(prefix)` makes
        the ids items and calls are known by; `history`: messages to start from."""
        self.llm, self.generation = llm, generation
        self.instructions, self.tools = instructions, list(tools or [])
        self.new_id = new_id
        self.messages: list[dict[str, Any]] = [{"id": new_id("item"), **m} for m in history or []]
        self.toolbox = Toolbox()  # the server's own tools: none
        self.may_act = asyncio.Event()
        self.may_act.set()
        self.reply_item_id: str | None = None  # set by the door when the reply's item is announced
        self.response_overrides: tuple[str | None, list[dict[str, Any]] | None] = (None, None)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.messages

    # ------------------------------------------------------------------ the conversation's items

    def add(self, role: str, content: str, item_id: str | None = None, **extra: Any) -> str:
        """A message at the end of the conversation; returns its item id."""
        item_id = item_id or self.new_id("item")
        self.messages.append({"id": item_id, "role": role, "content": content, **extra})
        return item_id

    def add_tool_output(self, call_id: str, output: str, item_id: str | None = None) -> str | None:
        """The client ran call `call_id`: its output joins the conversation. None for an unknown call."""
        if not any(c.get("id") == call_id for m in self.messages for c in m.get("tool_calls", ())):
            return None
        return self.add("tool", output, item_id, tool_call_id=call_id)

    def delete(self, item_id: str) -> bool:
        before = len(self.messages)
        self.messages[:] = [m for m in self.messages if m["id"] != item_id]
        return len(self.messages) < before

    def truncate(self, item_id: str, text: str) -> bool:
        """An assistant message cut to what the user heard."""
        for m in self.messages:
            if m["id"] == item_id and m["role"] == "assistant":
                m["content"] = text
                return True
        return False

    def find(self, item_id: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["id"] == item_id), None)

    # ------------------------------------------------------------------ what the speaker calls

    def hear(self, text: str) -> None:
        self.add("user", text)

    def dtmf_text(self, digits: str) -> str:
        return digits

    def state_events(self) -> list[AgentEvent]:
        return []

    def checkpoint(self) -> Any:
        return copy.deepcopy(self.messages)

    def rollback(self, checkpoint: Any) -> None:
        self.messages[:] = checkpoint

    def finished(self, spoken: str) -> None:
        if spoken:
            self.add("assistant", spoken, self._take_reply_id())

    def interrupted(self, heard: str) -> None:
        if heard:
            self.add("assistant", heard, self._take_reply_id())
        else:
            self._take_reply_id()

    def after_reply(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _take_reply_id(self) -> str | None:
        item_id, self.reply_item_id = self.reply_item_id, None
        return item_id

    async def reply(self, turn: int) -> AsyncIterator[str | AgentEvent]:
        """One model round: prose streams out; calls of the client's tools are handed over."""
        instructions, tools = self.response_overrides
        self.response_overrides = (None, None)
        tools = self.tools if tools is None else tools
        if self._results():
            tools = []  # answer from the results (a round without tools, as the server's agent does)
        names = tuple(t["name"] for t in tools)
        schemas = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")
                                                     if t.get(k) is not None}} for t in tools]
        options = replace(self.generation, tools=schemas or None, callable_tools=names or None)
        gate = SpeechGate()
        async with contextlib.aclosing(self.llm.stream_chat(self._prompt(instructions), options)) as deltas:
            async for delta in deltas:
                if speak := gate.feed(delta):
                    yield speak
        tail, held = gate.finish()
        if tail.strip():
            yield tail
        parsed = toolcalls.parse_reply(held) if held else None
        calls = [(n, a) for n, a in (parsed.calls if parsed else []) if n in names]
        if parsed and parsed.prose and not calls and not toolcalls.looks_like_code(parsed.prose):
            yield parsed.prose
        for name, arguments in calls:
            call_id = self.new_id("call")
            self.add("assistant", "", tool_calls=[{"id": call_id, "type": "function",
                                                  "function": {"name": name, "arguments": arguments}}])
            yield ToolStarted(turn=turn, id=call_id, name=name, arguments=arguments)
        if held and not calls:
            log.info("client agent: held reply was not a call of the client's tools: %.120r", held)

    def _prompt(self, instructions: str | None) -> list[dict[str, Any]]:
        system = instructions if instructions is not None else self.instructions
        if results := self._results():
            system = "\n".join(([system] if system else []) + [replies.FACTS_HEADER, *results])
        recent = [self._for_model(m) for m in self.messages[-MAX_HISTORY_MESSAGES:]
                  if m["role"] != "tool" and not m.get("tool_calls")]
        return ([{"role": "system", "content": system}] if system else []) + recent

    def _results(self) -> list[str]:
        """The client's tool outputs since the user's last message, as fact lines. Why not role
        "tool" messages: a 0.5B model handed one repeats it or the call, and answers correctly from
        facts in its system prompt (voice/llm/replies.py)."""
        names = {c["id"]: c["function"]["name"] for m in self.messages for c in m.get("tool_calls", ())}
        lines: list[str] = []
        for m in reversed(self.messages):
            if m["role"] == "user":
                break
            if m["role"] == "tool":
                content = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
                lines.append(f"* {names.get(m.get('tool_call_id'), 'tool')}: {content}")
        return lines[::-1]

    @staticmethod
    def _for_model(message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k != "id"}
