"""The LLM engine interface: chat messages in, a stream of text deltas out.

Implemented by the in-process llama.cpp engine and the OpenAI-compatible HTTP engine (vLLM,
SGLang, llama.cpp server). Messages are OpenAI-style dicts ({"role": ..., "content": ...}).
An engine that keeps state per conversation (GenerationOptions.conversation) may also have
`forget(conversation)`: the agent calls it when its session ends (LlamaCppEngine's sequence store).
Cancellation: the consumer stops iterating (aclose() or task cancellation) and the engine stops
generating at the next token, freeing its context for another session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: JSON-schema tool definitions rendered through the model's own chat template, if any.
    tools: list[dict[str, Any]] | None = field(default=None, hash=False)
    #: Which conversation the request continues (the session id): an engine with several KV caches
    #: keeps each conversation's prompt warm (LlamaCppEngine's routing); others ignore it.
    conversation: str | None = None
    #: Tools (names among `tools`) a call in the reply may name. Set: engines that can constrain
    #: decoding make every call valid JSON naming one of them with schema-valid arguments, while
    #: prose stays free (voice/llm/grammar.py). None: the reply is not constrained.
    callable_tools: tuple[str, ...] | None = None
    #: With callable_tools: the reply must be such a call (constrained from its first token). For a
    #: question or request the routing says a tool answers: a 0.5B model otherwise invents an answer
    #: in prose ("The weather in Nairobi tomorrow will be sunny") instead of calling the tool.
    require_call: bool = False


@runtime_checkable
class LlmEngine(Protocol):
    """Process-wide LLM shared by all sessions."""

    name: str

    def stream_chat(self, messages: list[dict[str, Any]],
                    options: GenerationOptions | None = None) -> AsyncIterator[str]:
        """Text deltas of the assistant reply, in order; ends when generation ends."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with this model's tokenizer (for history budgets)."""
        ...

    def close(self) -> None:
        ...
