"""Settings of the agents (the `[agents]` section of the config): which agent, where data lives, tool rules."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def default_data_dir() -> Path:
    """VOICE_DATA_DIR, else ~/.cache/voice-agent: where the agents' SQLite files live."""
    return Path(os.environ.get("VOICE_DATA_DIR") or Path.home() / ".cache" / "voice-agent")


class McpServerSettings(BaseModel):
    """One MCP server started over stdio for each session of the listed agents."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # tools are named "namespace.tool"
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0)      # per tool call
    agents: list[str] = Field(default_factory=lambda: ["assistant"])


class AgentsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    default: str = "assistant"              # agent of a session whose HELLO options name none
    data_dir: Path = Field(default_factory=default_data_dir)  # bookings.sqlite3, reminders.sqlite3
    filler_after_ms: float = Field(1000.0, ge=0)  # a tool slower than this gets the filler line
    filler: str = "One moment."
    call_filler: str = "Let me check."      # said when the model starts a call of an ordinary tool ("": off)
    constrain_calls: bool = True            # tool calls decoded under a grammar of the tools' schemas
    say_results: bool = True                # tools' `say` templates answer (no second LLM round)
    route_tools: bool = True                # offer a tool only when its trigger words were said
    tool_history: int | None = Field(1, ge=0)  # history messages in a round that offers tools (None: all)
    history_tokens: int = Field(1500, ge=64)  # history sent to the LLM, tokens (older turns summarised)
    summary_tokens: int = Field(120, ge=16)   # length of the rolling summary, tokens
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)
