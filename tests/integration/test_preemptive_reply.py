"""Preemptive reply: the ReplySpeaker prepares its answer before the turn is confirmed, with the real
Piper voice; the agent's model is scripted (the agent logic under test is ours, not the LLM's)."""

from __future__ import annotations

import asyncio

import pytest
from scripted_agent import Recorder, ScriptedLlm, booking_agent

from voice.llm.agent import Agent
from voice.llm.tools import Toolbox, tool
from voice.models import model_path
from voice.pipeline.audio_out import AudioOut
from voice.pipeline.speaker import ReplySpeaker
from voice.pipeline.turn_metrics import TurnMetrics


@pytest.fixture(scope="module")
def tts():
    from voice.tts.piper import PiperEngine

    engine = PiperEngine(model_path("piper-joe"))
    yield engine
    engine.close()


def final_texts(rec: Recorder) -> list[tuple[int, str]]:
    return [(e.turn, e.text) for e in rec.events if e.type == "agent_text" and e.final]


def conversation(tts, agent: Agent) -> tuple[ReplySpeaker, Recorder]:
    rec = Recorder()
    return ReplySpeaker(agent, tts, AudioOut("pcm16", 16000), rec.emit), rec


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_prepared_reply_is_synthesized_but_nothing_leaves_until_commit(tts):
    async def run():
        agent = Agent(ScriptedLlm("Paris is the capital of France."))
        conv, rec = conversation(tts, agent)
        m = TurnMetrics(0, speech_end=asyncio.get_running_loop().time())
        conv.start("What is the capital of France?", m, held=True)
        await until(lambda: "first_tts_audio" in m.stamps)  # the LLM and the TTS did their work
        await asyncio.sleep(0.3)
        held = (list(rec.events), list(rec.frames), conv.speaking, conv.held)
        conv.release()
        await until(lambda: not conv.speaking)
        await conv.aclose()
        return held, rec, conv

    (events, frames, speaking, prepared), rec, conv = asyncio.run(run())
    assert events == [] and frames == [], "a prepared reply leaked before commit"
    assert prepared and not speaking
    assert rec.types()[0] == "agent_text" and "turn_metrics" in rec.types()
    assert final_texts(rec) == [(1, "Paris is the capital of France.")]
    assert sum(f.samples for f in rec.frames) > 16000 * 0.5, "the reply audio was not sent after commit"
    assert [m["role"] for m in conv.history] == ["user", "assistant"]


def test_a_cancelled_reply_sends_nothing_and_leaves_no_trace(tts):
    async def run():
        agent = Agent(ScriptedLlm("Paris is the capital.", "Seven days."))
        conv, rec = conversation(tts, agent)
        m = TurnMetrics(0)
        conv.start("What is the capital", m, held=True)
        await until(lambda: "first_tts_audio" in m.stamps)
        conv.drop()
        await asyncio.sleep(0.3)
        after_cancel = (list(rec.events), list(rec.frames), list(conv.history), conv.held)
        conv.start("How many days are in a week?", TurnMetrics(0))
        await until(lambda: not conv.speaking)
        await conv.aclose()
        return after_cancel, rec, conv

    (events, frames, history, prepared), rec, conv = asyncio.run(run())
    assert events == [] and frames == [] and history == [] and not prepared
    assert final_texts(rec) == [(1, "Seven days.")]  # the turn number is not used up
    assert conv.history == [{"role": "user", "content": "How many days are in a week?"},
                            {"role": "assistant", "content": "Seven days."}]


def test_a_prepared_reply_runs_no_tool_before_commit_and_none_at_all_when_cancelled(tts):
    runs: list[str] = []

    @tool()
    async def weather(city: str) -> str:
        """The weather in a city."""
        runs.append(city)
        return "sunny"

    async def run(commit: bool):
        llm = ScriptedLlm('{"name": "weather", "arguments": {"city": "Oslo"}}', "It is sunny in Oslo.")
        conv, rec = conversation(tts, Agent(llm, toolbox=Toolbox([weather])))
        conv.start("What is the weather in Oslo?", TurnMetrics(0), held=True)
        await asyncio.sleep(0.5)  # time enough for the model's call and the tool, were it allowed
        ran_before = list(runs)
        if commit:
            conv.release()
            await until(lambda: not conv.speaking)
        else:
            conv.drop()
            await asyncio.sleep(0.3)
        await conv.aclose()
        return ran_before, rec

    ran_before, rec = asyncio.run(run(commit=False))
    assert ran_before == [] and runs == [] and rec.events == []
    ran_before, rec = asyncio.run(run(commit=True))
    assert ran_before == [] and runs == ["Oslo"]
    assert rec.types().index("tool_call") < rec.types().index("tool_result")
    assert final_texts(rec)[0][1].endswith("It is sunny in Oslo.")


def test_a_cancelled_reply_puts_the_flow_back(tts, tmp_path):
    async def run():
        agent, store, _ = booking_agent(tmp_path)
        conv, rec = conversation(tts, agent)
        before = (agent.flow.path, dict(agent.flow.slots))
        conv.start("Italian for 2 people at 7 pm", TurnMetrics(0), held=True)
        await asyncio.sleep(0.3)
        moved = (agent.flow.path, dict(agent.flow.slots))
        conv.drop()
        after = (agent.flow.path, dict(agent.flow.slots))
        await conv.aclose()
        return before, moved, after, rec, store

    before, moved, after, rec, store = asyncio.run(run())
    assert moved != before, "the prepared turn should have moved the flow (else this test shows nothing)"
    assert after == before and rec.events == [] and store.all() == []


def test_a_reply_started_after_a_dropped_one_takes_its_turn_number_and_place(tts):
    async def run():
        agent = Agent(ScriptedLlm("First answer.", "Second answer."))
        conv, rec = conversation(tts, agent)
        conv.start("first question", TurnMetrics(0), held=True)
        await asyncio.sleep(0.2)
        conv.drop()  # what the turn controller does when a typed turn arrives
        conv.start("second question", TurnMetrics(0))
        await until(lambda: not conv.speaking)
        await conv.aclose()
        return rec, conv

    rec, conv = asyncio.run(run())
    assert final_texts(rec) == [(1, "Second answer.")]  # the prepared one asked the model first, then was dropped
    assert [m["content"] for m in conv.history if m["role"] == "user"] == ["second question"]


class SlowCallLlm:
    """Writes a weather call slowly, like a small model on a busy CPU (a token every 0.3 s)."""

    name = "slow-call"

    def __init__(self, call: str, delay_s: float = 0.3):
        self.call, self.delay_s = call, delay_s
        self.finished_at: float | None = None

    async def stream_chat(self, messages, options=None):
        for i in range(0, len(self.call), 6):
            await asyncio.sleep(self.delay_s)
            yield self.call[i:i + 6]
        self.finished_at = asyncio.get_running_loop().time()

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass


def test_the_call_filler_is_heard_while_the_call_is_still_being_written(tts):
    """"Let me check." is a whole sentence of the agent's own: its audio goes out at once, not when
    the words after it arrive (a tool call and its result, seconds away under load)."""
    from voice.agents import assistant

    async def run():
        llm = SlowCallLlm('{"name": "get_weather", "arguments": {"city": "Paris", "day": "tomorrow"}}')
        agent = Agent(llm, toolbox=Toolbox([assistant.get_weather]))
        conv, rec = conversation(tts, agent)
        loop = asyncio.get_running_loop()
        m = TurnMetrics(0, speech_end=loop.time())
        conv.start("What's the weather in Paris tomorrow?", m)
        await until(lambda: rec.frames)
        first_audio_at = loop.time()
        await until(lambda: not conv.speaking, timeout_s=30)
        await conv.aclose()
        return llm, first_audio_at, rec

    llm, first_audio_at, rec = asyncio.run(run())
    spoken = final_texts(rec)
    assert llm.finished_at is not None and first_audio_at < llm.finished_at - 1.0, "the filler waited for the call"
    assert spoken and spoken[0][1].startswith("Let me check. Tomorrow in Paris"), spoken
