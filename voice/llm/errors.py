"""The one error type LLM engines raise to their consumer."""

from __future__ import annotations


class LlmError(RuntimeError):
    """Generation failed: bad request, context overflow, model or server error, unreachable server.

    The message says what failed and, for HTTP engines, the status and a short body excerpt.
    The engine itself stays usable: the next request is served normally.
    """
