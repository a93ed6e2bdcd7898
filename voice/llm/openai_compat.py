"""LLM engine for any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, hosted APIs).

This is how a deployment outgrows one box: the voice server streams `POST {base_url}/chat/completions`
with `stream: true` and yields the `choices[0].delta.content` of each server-sent event until
`data: [DONE]`. `base_url` includes the version prefix, as in the OpenAI SDK
("http://127.0.0.1:8080/v1").

Cancellation closes the HTTP response (and its connection): vLLM, SGLang and llama.cpp server stop
generating when the client disconnects. HTTP errors, error events, malformed chunks, timeouts and
connection failures all reach the consumer as LlmError with the status and a short body excerpt.

Tool calls: servers that parse calls themselves (vLLM with --enable-auto-tool-choice, llama.cpp
server with --jinja, hosted APIs) send them as `delta.tool_calls` fragments; they are gathered and
yielded at the end of the stream as `<tool_call>{"name": ..., "arguments": ...}</tool_call>` text,
the form the agent parses from any model. Constrained decoding (GenerationOptions.callable_tools)
is the server's business here: llama.cpp server and vLLM constrain their own tool-call output with
a grammar when they parse calls; a server that does not gets no grammar from us, and its text is
parsed leniently (toolcalls.py). `strict` tool schemas are not sent: OpenAI's strict mode refuses
optional arguments, which our tools have.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voice.llm.base import GenerationOptions
from voice.llm.errors import LlmError, check_messages

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300  # of an error body, in the LlmError message
CHARS_PER_TOKEN = 4  # rough average for English with BPE vocabularies


class StreamDone:
    """Sentinel type: the `data: [DONE]` event."""


DONE = StreamDone()


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def parse_sse_line(line: str) -> str | StreamDone | None:
    """One line of a chat-completions event stream -> a content delta, DONE, or None (nothing).

    Blank lines, comments (":") and other fields (event:, id:, retry:) carry no content. A `data:`
    payload that is not JSON, not a chunk, or an `{"error": ...}` event raises LlmError.
    """
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return DONE
    if not payload:
        return None
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise LlmError(f"bad JSON in the event stream ({exc.msg}): {_excerpt(payload)}") from None
    if not isinstance(chunk, dict):
        raise LlmError(f"event is not a JSON object: {_excerpt(payload)}")
    if "error" in chunk:
        raise LlmError(f"server error in the event stream: {_excerpt(json.dumps(chunk['error']))}")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise LlmError(f"event has no 'choices' list: {_excerpt(payload)}")
    if not choices:
        return None  # e.g. a final usage-only chunk
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    if not isinstance(delta, dict):
        raise LlmError(f"event choice has no 'delta' object: {_excerpt(payload)}")
    content = delta.get("content")
    return content if isinstance(content, str) and content else None


class ToolCallFragments:
    """`delta.tool_calls` pieces of one streamed reply, joined by index into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, line: str) -> None:
        if not line.startswith("data:") or line[5:].strip() in ("", "[DONE]"):
            return
        try:
            chunk = json.loads(line[5:])
            fragments = chunk["choices"][0]["delta"].get("tool_calls") or []
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            return  # parse_sse_line reports malformed events
        for fragment in fragments if isinstance(fragments, list) else []:
            call = self._calls.setdefault(int(fragment.get("index", len(self._calls))), {"name": "", "arguments": ""})
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def text(self) -> str:
        """The calls as tagged JSON text ("" when there were none)."""
        out = []
        for _, call in sorted(self._calls.items()):
            try:
                arguments = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except json.JSONDecodeError:
                arguments = call["arguments"]  # the agent's parser repairs or rejects it
            out.append(f"<tool_call>\n{json.dumps({'name': call['name'], 'arguments': arguments})}\n</tool_call>")
        return "\n".join(out)


def request_body(model: str, messages: list[dict[str, Any]], options: GenerationOptions) -> dict[str, Any]:
    """The JSON body of a streamed chat-completions request; unset options are left to the server."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
    }
    if options.stop:
        body["stop"] = list(options.stop)
    if options.seed is not None:
        body["seed"] = options.seed
    if options.tools:
        body["tools"] = options.tools
    return body


class OpenAICompatEngine:
    """Streams chat completions from an OpenAI-compatible HTTP server; one pooled client per event loop."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 30.0,
                 connect_timeout_s: float = 5.0, max_connections: int = 64) -> None:
        """`timeout_s`: longest wait for any one read (time to first token, and any gap between
        tokens), s; `connect_timeout_s`: for opening a connection, s. `max_connections`: pool size,
        at least the number of sessions that may stream at once."""
        self.name = f"openai:{model}"
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limits = httpx.Limits(max_connections=max_connections)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _client_for_running_loop(self) -> httpx.AsyncClient:
        # httpx connections belong to the loop that opened them; a new loop gets a new client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits,
                                             headers=self._headers)
            self._client_loop = loop
        return self._client

    async def stream_chat(self, messages: list[dict[str, Any]],
                          options: GenerationOptions | None = None) -> AsyncIterator[str]:
        """Text deltas of the reply; LlmError on any failure (see the module docstring)."""
        check_messages(messages)
        try:
            body = json.dumps(request_body(self.model, messages, options or GenerationOptions()))
        except (TypeError, ValueError) as exc:
            raise LlmError(f"request is not JSON-serialisable: {exc}") from None
        client = self._client_for_running_loop()
        try:
            async with client.stream("POST", self.url, content=body,
                                     headers={"Content-Type": "application/json"}) as response:
                if response.status_code >= 400:
                    detail = _excerpt(await response.aread())
                    raise LlmError(f"{self.url} answered HTTP {response.status_code}: {detail}")
                calls = ToolCallFragments()
                async for line in response.aiter_lines():
                    delta = parse_sse_line(line)
                    if delta is DONE:
                        break
                    calls.add(line)
                    if delta:
                        yield delta  # type: ignore[misc]
                else:
                    log.warning("%s ended the event stream without [DONE]", self.url)
                if text := calls.text():
                    yield text
        except httpx.TimeoutException as exc:
            raise LlmError(f"{self.url} timed out ({type(exc).__name__}, read timeout "
                           f"{self._timeout.read} s)") from exc
        except httpx.HTTPError as exc:
            raise LlmError(f"cannot stream from {self.url}: {type(exc).__name__}: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        """Approximate: ceil(characters / 4). Exact counts need a round trip to the server, and
        this method is synchronous (called on the event loop), so it does not make one."""
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def close(self) -> None:
        """Close the pooled connections if called on their loop; otherwise just drop them."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._client_loop:
            running.create_task(client.aclose())
