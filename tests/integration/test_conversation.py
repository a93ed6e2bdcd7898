"""The reply speaker with the real Qwen 0.5B and Piper: streamed reply, barge-in history, failures."""

from __future__ import annotations

import asyncio
import re

import pytest
from scripted_agent import Recorder

from voice.llm.agent import Agent
from voice.llm.base import GenerationOptions
from voice.llm.errors import LlmError
from voice.models import model_path
from voice.pipeline.audio_out import AudioOut
from voice.pipeline.speaker import APOLOGY, ReplySpeaker
from voice.pipeline.turn_metrics import TurnMetrics


@pytest.fixture(scope="module")
def engines():
    from voice.llm.llama import LlamaCppEngine
    from voice.tts.piper import PiperEngine

    llm = LlamaCppEngine(model_path("qwen2.5-coder-0.5b"), n_ctx=2048, n_threads=2)
    tts = PiperEngine(model_path("piper-joe"))
    yield llm, tts
    llm.close()
    tts.close()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def _interrupted_reply(llm, tts):
    rec = Recorder()
    agent = Agent(llm, system_prompt="You are a storyteller. Tell long, detailed stories.",
                  generation=GenerationOptions(max_tokens=200, temperature=0.0))
    conv = ReplySpeaker(agent, tts, AudioOut("pcm16", 16000), rec.emit)
    conv.start("Tell me a long story about a dragon who learns to bake bread.", TurnMetrics(0))
    while sum(f.samples for f in rec.frames) < 16000 * 2.0:  # 2 s of the reply has been sent
        await asyncio.sleep(0.01)
    conv.playback_mark(sum(f.samples for f in rec.frames) - 16000 // 2)  # the client played 0.5 s less
    rec.emit(conv.cut("barge_in"))
    sent_at_interrupt = len(rec.frames)
    await asyncio.sleep(0.5)
    spoken = "".join(e.text for e in rec.events if getattr(e, "type", "") == "agent_text" and not e.final)
    await conv.aclose()
    return conv, rec, sent_at_interrupt, spoken


def test_barge_in_keeps_only_the_heard_part_in_history(engines):
    conv, rec, sent_at_interrupt, generated = asyncio.run(_interrupted_reply(*engines))
    assert len(rec.frames) == sent_at_interrupt, "audio kept flowing after the interruption"
    assert [m["role"] for m in conv.history] == ["user", "assistant"]
    heard = words(conv.history[-1]["content"])
    assert heard, "nothing heard after 1.5 s of audio?"
    assert heard == words(generated)[: len(heard)], "history is not a prefix of what was said"
    assert len(heard) < len(words(generated)), "history holds more than was heard"
    interrupted = [e for e in rec.events if getattr(e, "type", "") == "interrupted"]
    assert interrupted and 1000 <= interrupted[0].played_ms <= 2000
    assert interrupted[0].heard_text == conv.history[-1]["content"]  # clients show what the agent keeps


class BrokenLlm:
    """A real engine's failure mode (LlmError from the engine), without a model."""

    name = "broken"

    async def stream_chat(self, messages, options=None):
        raise LlmError("context overflow")
        yield ""  # pragma: no cover

    def count_tokens(self, text):
        return len(text)

    def close(self):
        pass


def test_llm_failure_is_answered_with_a_spoken_apology(engines):
    _, tts = engines

    async def run():
        rec = Recorder()
        conv = ReplySpeaker(Agent(BrokenLlm(), system_prompt="x"), tts, AudioOut("pcm16", 16000), rec.emit)
        conv.start("hello", TurnMetrics(0))
        await asyncio.wait_for(conv._reply, 30)
        await conv.aclose()
        return conv, rec

    conv, rec = asyncio.run(run())
    assert conv.history[-1] == {"role": "assistant", "content": APOLOGY}
    assert sum(f.samples for f in rec.frames) > 16000  # the apology was spoken
