"""Tools from MCP servers: start a server over stdio, list its tools, expose them as "namespace.tool".

Uses the official `mcp` SDK (2.x: `mcp.Client` over `StdioServerParameters`). The SDK's client is
an anyio context manager that must be entered and left in the same task, so each server connection
is owned by one background task that holds the client open until `aclose()`. Calls from the agent
go through that client; they get the same rules as local tools (Tool.timeout_s, arguments checked
against the server's published input schema, errors as structured results): a tool result with
`isError` becomes a ToolError, a dead server or a protocol failure an exception that `run_tool`
turns into a "crashed" result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voice.llm.tools import DEFAULT_TIMEOUT_S, Tool, ToolError, schema_validator

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0  # a Python MCP server imports the SDK (~1 s) before it answers


class McpError(RuntimeError):
    """An MCP server could not be started or listed."""


@dataclass
class McpServer:
    """How to start one MCP server over stdio; its tools are named `namespace.tool`."""

    namespace: str
    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


class McpConnection:
    """One running MCP server and its tools; `start()`, then `tools`, then `aclose()`."""

    def __init__(self, server: McpServer):
        self.server = server
        self.tools: list[Tool] = []
        self._client: Any = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._owner: asyncio.Task[None] | None = None

    async def start(self) -> list[Tool]:
        self._owner = asyncio.create_task(self._own(), name=f"mcp-{self.server.namespace}")
        try:
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            await self.aclose()
            raise McpError(f"MCP server {self.server.namespace!r} did not start within {START_TIMEOUT_S:g} s") from None
        if self._error is not None:
            raise McpError(f"MCP server {self.server.namespace!r}: {self._error}") from self._error
        listing = await asyncio.wait_for(self._client.list_tools(), START_TIMEOUT_S)
        self.tools = [self._tool(t) for t in listing.tools]
        log.info("MCP server %s: %d tools", self.server.namespace, len(self.tools))
        return self.tools

    async def _own(self) -> None:
        from mcp import Client, StdioServerParameters

        # the SDK passes only a few safe variables (PATH, HOME...) plus ours: no secrets leak to servers
        params = StdioServerParameters(command=self.server.command, args=self.server.args,
                                       env=self.server.env or None, cwd=self.server.cwd)
        try:
            async with Client(params) as client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except Exception as e:  # startup failures go to start(); later ones make calls fail
            self._error = e
            log.warning("MCP server %s ended: %s", self.server.namespace, e)
        finally:
            self._client = None
            self._ready.set()

    def _tool(self, listed: Any) -> Tool:
        remote = listed.name
        schema = dict(listed.input_schema or {"type": "object", "properties": {}})
        schema.pop("title", None)

        async def call(**arguments: Any) -> Any:
            if self._client is None:
                raise ToolError(f"the {self.server.namespace} service is not running")
            result = await self._client.call_tool(remote, arguments)
            text = " ".join(getattr(c, "text", "") for c in result.content).strip()
            if result.is_error:
                raise ToolError(text or f"{remote} failed")
            if result.structured_content is not None:
                return result.structured_content
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text

        return Tool(name=f"{self.server.namespace}.{remote}", description=listed.description or remote,
                    parameters=schema, fn=call, validate=schema_validator(schema), timeout_s=self.server.timeout_s)

    async def aclose(self) -> None:
        self._stop.set()
        if self._owner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._owner, 10)


async def connect_all(servers: Sequence[McpServer]) -> tuple[list[Tool], list[McpConnection]]:
    """Start every server (concurrently); all their tools, and the connections to close later.
    A server that fails to start is logged and skipped: the agent works without its tools."""
    connections = [McpConnection(s) for s in servers]
    results = await asyncio.gather(*(c.start() for c in connections), return_exceptions=True)
    tools: list[Tool] = []
    alive: list[McpConnection] = []
    for conn, result in zip(connections, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("MCP server %s unavailable: %s", conn.server.namespace, result)
            await conn.aclose()
        else:
            tools += result
            alive.append(conn)
    return tools, alive
