"""The shipped example agents and how a session gets one: `build_agent(name, ...)`.

HELLO options {"agent": "booking" | "assistant"} pick one per session (default: agents.default);
{"profile": {...}} gives facts about the user that go into the prompt. Kept import-light (the
agent modules load on first use) because voice.llm.flows imports voice.agents.slots.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voice.agents.dates import Clock
    from voice.agents.settings import AgentsSettings
    from voice.llm.agent import Agent
    from voice.llm.base import GenerationOptions, LlmEngine

AGENTS = ("assistant", "booking")
MAX_PROFILE_KEYS = 20


def check_agent_options(options: dict[str, Any], default: str) -> dict[str, Any]:
    """The validated "agent" and "profile" HELLO options; raises ValueError with a readable reason."""
    name = options.get("agent", default)
    if name not in AGENTS:
        raise ValueError(f"options.agent: unknown agent {name!r}; known: {', '.join(AGENTS)}")
    profile = options.get("profile", {})
    if not isinstance(profile, dict) or len(profile) > MAX_PROFILE_KEYS or not all(
            isinstance(v, str | int | float) and len(str(v)) <= 200 for v in profile.values()):
        raise ValueError(f"options.profile must be an object of at most {MAX_PROFILE_KEYS} short values")
    return {"agent": name, "profile": profile}


async def build_agent(name: str, llm: LlmEngine, settings: AgentsSettings, generation: GenerationOptions, *,
                      session_id: str, system_prompt: str, profile: dict[str, Any] | None = None,
                      clock: Clock | None = None) -> Agent:
    """A fresh agent for one session. Opens its SQLite file and MCP servers off the event loop.
    `clock`: what "now" is for the times and days users say (default: local time; tests fix it)."""
    from voice.agents import assistant, booking
    from voice.agents.store import BookingStore, ReminderStore
    from voice.llm.agent import Agent, AgentOptions
    from voice.llm.flows import load_flow
    from voice.llm.mcp_tools import McpServer, connect_all
    from voice.llm.memory import Memory
    from voice.llm.tools import Toolbox

    on_close = []
    if name == "booking":
        store = await asyncio.to_thread(BookingStore, settings.data_dir / "bookings.sqlite3")
        tools = booking.booking_tools(store, reference=session_id)
        flow = await asyncio.to_thread(load_flow, booking.FLOW)
    else:
        store = await asyncio.to_thread(ReminderStore, settings.data_dir / "reminders.sqlite3")
        user = str((profile or {}).get("user", "default"))
        tools = [assistant.get_weather, *assistant.reminder_tools(store, user, clock or datetime.now)]
        flow = await asyncio.to_thread(load_flow, assistant.FLOW)
    if not flow.identity:
        flow = flow.model_copy(update={"identity": system_prompt})
    servers = [McpServer(s.namespace, s.command, s.args, s.env, timeout_s=s.timeout_s)
               for s in settings.mcp_servers if name in s.agents]
    if servers:
        mcp_tools, connections = await connect_all(servers)
        tools += mcp_tools
        on_close += [c.aclose for c in connections]
    options = AgentOptions(filler_after_s=settings.filler_after_ms / 1000, filler=settings.filler,
                           call_filler=settings.call_filler, route_tools=settings.route_tools,
                           tool_history=settings.tool_history, constrain_calls=settings.constrain_calls,
                           say_results=settings.say_results,
                           abilities=assistant.ABILITIES if name == "assistant" else booking.ABILITIES,
                           refuse_actions=name == "assistant")
    memory = Memory(llm, budget_tokens=settings.history_tokens, summary_tokens=settings.summary_tokens,
                    profile=profile)
    generation = replace(generation, conversation=session_id)
    if (forget := getattr(llm, "forget", None)) is not None:  # engines that keep per-conversation KV
        async def forget_conversation() -> None:
            forget(session_id)
        on_close.append(forget_conversation)
    return Agent(llm, name=name, system_prompt=system_prompt, generation=generation, toolbox=Toolbox(tools),
                 flow=flow, memory=memory, options=options, on_close=on_close, clock=clock)
