"""Conversation memory: token budget, rolling summary off the critical path, profile in the prompt."""

from __future__ import annotations

import asyncio

from voice.llm.agent import Agent
from voice.llm.memory import Memory


class WordLlm:
    """Counts a token per word; "summarises" with a fixed text, slowly if asked to."""

    name = "words"

    def __init__(self, summary: str = "They talked about cats.", delay_s: float = 0.0):
        self.summary, self.delay_s = summary, delay_s
        self.requests: list[list[dict]] = []
        self.cancelled = False

    async def stream_chat(self, messages, options=None):
        self.requests.append(messages)
        try:
            await asyncio.sleep(self.delay_s)
            for word in self.summary.split(" "):
                yield word + " "
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass


def chat(memory: Memory, turns: int, words: int = 20) -> None:
    for i in range(turns):
        memory.add("user", f"question {i} " + "w " * words)
        memory.add("assistant", f"answer {i} " + "w " * words)


def test_the_window_fits_the_budget_and_keeps_the_newest_messages():
    memory = Memory(WordLlm(), budget_tokens=100)
    chat(memory, 10)
    window = memory.window()
    assert sum(memory.tokens(m) for m in window) <= 100
    assert window[-1] == memory.messages[-1] and len(window) < len(memory.messages)


def test_the_window_always_has_the_last_message():
    memory = Memory(WordLlm(), budget_tokens=5)
    memory.add("user", "a very long question " * 10)
    assert memory.window() == memory.messages


def test_tokens_are_counted_with_the_models_tokenizer():
    memory = Memory(WordLlm(), budget_tokens=100)
    assert memory.tokens({"role": "user", "content": "one two three"}) == 3 + 4


async def test_older_turns_are_folded_into_a_summary_after_the_reply():
    llm = WordLlm()
    memory = Memory(llm, budget_tokens=120)
    chat(memory, 6)
    memory.start_folding()
    assert memory.folding
    await memory._fold
    assert memory.summary == "They talked about cats."
    assert memory.total_tokens() <= 60 and memory.messages[-1]["content"].startswith("answer 5")
    assert "question 0" in llm.requests[0][1]["content"]


async def test_no_fold_while_the_history_fits():
    memory = Memory(WordLlm(), budget_tokens=10_000)
    chat(memory, 3)
    memory.start_folding()
    assert not memory.folding


async def test_a_new_user_turn_cancels_a_running_fold_and_keeps_the_history():
    llm = WordLlm(delay_s=1.0)
    memory = Memory(llm, budget_tokens=120)
    chat(memory, 6)
    before = list(memory.messages)
    agent = Agent(llm, memory=memory)
    memory.start_folding()
    await asyncio.sleep(0.01)
    agent.hear("a new question")  # the user speaks: the summary must not compete with the reply
    await asyncio.sleep(0.01)
    assert llm.cancelled and memory.summary == ""
    assert memory.messages[:-1] == before


async def test_the_summary_and_profile_go_into_the_prompt():
    llm = WordLlm()
    memory = Memory(llm, profile={"name": "Ana"})
    memory.summary = "Ana asked about trains."
    agent = Agent(llm, system_prompt="You help.", memory=memory)
    agent.hear("hi")
    _ = [item async for item in agent.reply(1)]
    system = llm.requests[-1][0]["content"]
    assert "You help." in system and "Ana asked about trains." in system and "About the user: name: Ana" in system
