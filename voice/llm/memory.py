"""Conversation memory: recent turns within a token budget, older ones folded into a summary.

Tokens are counted with the model's own tokenizer (LlmEngine.count_tokens; counts are cached per
message text). `window()` always fits the budget: it takes the newest messages that fit. When the
history outgrows the budget, `start_folding()` (called after a reply is done) summarises the
oldest messages with the same LLM in a background task and replaces them with the summary.

Why it never delays the first audio: folding starts only after a reply has finished, and the next
user turn cancels it (`cancel_folding()`); the engine stops a cancelled request at its next token.
A fold that loses that race is simply tried again after the next reply, and until it succeeds the
window just drops the oldest messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.errors import LlmError

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators of one chat message
SUMMARY_PROMPT = (
    "You keep notes of a phone conversation between a user and a voice assistant. Update the notes with "
    "the new part of the conversation. Keep names, numbers, times, choices and open requests; drop "
    "small talk. Write at most {words} words of plain text."
)


class Memory:
    """History of one conversation; see the module docstring. Use from the event loop."""

    def __init__(self, llm: LlmEngine, *, budget_tokens: int = 1500, summary_tokens: int = 120,
                 profile: dict[str, Any] | None = None):
        self.llm = llm
        self.budget_tokens = budget_tokens
        self.summary_tokens = summary_tokens
        self.messages: list[dict[str, Any]] = []
        self.summary = ""
        self.profile: dict[str, Any] = dict(profile or {})
        self._counts: dict[str, int] = {}
        self._fold: asyncio.Task[None] | None = None

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})

    def extend(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)

    # ------------------------------------------------------------ budget

    def tokens(self, message: dict[str, Any]) -> int:
        text = str(message.get("content") or "")
        if text not in self._counts:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[text] = self.llm.count_tokens(text) + MESSAGE_OVERHEAD_TOKENS
        return self._counts[text]

    def total_tokens(self) -> int:
        return sum(self.tokens(m) for m in self.messages)

    def window(self) -> list[dict[str, Any]]:
        """The newest messages that fit the budget (at least the last one), oldest first."""
        left = self.budget_tokens - (self.llm.count_tokens(self.summary) if self.summary else 0)
        out: list[dict[str, Any]] = []
        for message in reversed(self.messages):
            cost = self.tokens(message)
            if out and cost > left:
                break
            out.append(message)
            left -= cost
        return out[::-1]

    # ------------------------------------------------------------ folding

    @property
    def folding(self) -> bool:
        return self._fold is not None and not self._fold.done()

    def start_folding(self) -> None:
        """Fold in the background when the history is over budget (after a reply, never before)."""
        if self.folding or self.total_tokens() <= self.budget_tokens:
            return
        self._fold = asyncio.create_task(self.fold(), name="memory-fold")

    def cancel_folding(self) -> None:
        if self.folding:
            assert self._fold is not None
            self._fold.cancel()

    async def fold(self) -> None:
        """Summarise the oldest messages until the rest fits half the budget; all or nothing."""
        cut, kept = 0, self.total_tokens()
        while cut < len(self.messages) - 1 and kept > self.budget_tokens // 2:
            kept -= self.tokens(self.messages[cut])
            cut += 1
        if cut == 0:
            return
        old = self.messages[:cut]
        transcript = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in old)
        previous = f"Notes so far: {self.summary}\n\n" if self.summary else ""
        request = [
            {"role": "system", "content": SUMMARY_PROMPT.format(words=int(self.summary_tokens * 0.7))},
            {"role": "user", "content": f"{previous}New part of the conversation:\n{transcript}\n\nUpdated notes:"},
        ]
        options = GenerationOptions(max_tokens=self.summary_tokens, temperature=0.0)
        parts: list[str] = []
        try:
            async with contextlib.aclosing(self.llm.stream_chat(request, options)) as deltas:
                async for delta in deltas:
                    parts.append(delta)
        except LlmError as e:  # a background chore: the history window keeps working without it
            log.warning("summarising the history failed: %s", e)
            return
        summary = "".join(parts).strip()
        if summary and self.messages[:cut] == old:  # only appends can have happened meanwhile
            del self.messages[:cut]
            self.summary = summary
            log.debug("folded %d messages into a %d-char summary", cut, len(summary))

    async def aclose(self) -> None:
        if self._fold is not None:
            self._fold.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fold
