"""The one error type LLM engines raise to their consumer, and the request check that raises it."""

from __future__ import annotations

from typing import Any


class LlmError(RuntimeError):
    """Generation failed: bad request, context overflow, model or server error, unreachable server.

    The message says what failed and, for HTTP engines, the status and a short body excerpt.
    The engine itself stays usable: the next request is served normally.
    """


def check_messages(messages: Any) -> None:
    """Raise LlmError unless `messages` is a non-empty list of {"role": str, ...} dicts."""
    if not isinstance(messages, list) or not messages:
        raise LlmError(f"messages must be a non-empty list of dicts, not {type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise LlmError(f"messages[{i}] must be a dict with a 'role' string, not {message!r:.80}")
