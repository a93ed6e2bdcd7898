"""The turn controller with the real ears and voice: Silero VAD, Whisper tiny.en, Smart Turn v3.2 and
Piper, fed Piper speech in real time. The agent's model is scripted (the turn logic under test is
ours, not the LLM's); every other part is the real one the server runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soxr
from piper_speech import synthesize
from scripted_agent import ScriptedLlm
from speech_data import model_path_or_skip

from voice.asr.vad import VadEngine
from voice.asr.whisper import WhisperEngine
from voice.config import load_settings
from voice.pipeline.audio_out import OutFrame
from voice.pipeline.call import open_call
from voice.pipeline.engines import load_turn_engine
from voice.pipeline.events import UserText
from voice.pipeline.options import resolve_options
from voice.pipeline.turns import TurnController

pytestmark = pytest.mark.timeout(180)

SR = 16000
CHUNK = 320  # 20 ms
LONG_REPLY = ("Once upon a time a dragon lived in a cave above a little town. Every morning it flew over the "
              "roofs and every evening it came back with bread from the baker, who was its only friend.")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from voice.tts.piper import PiperEngine

    settings = load_settings(overrides={"agents": {"data_dir": str(tmp_path_factory.mktemp("data"))}})
    vad = VadEngine(model_path_or_skip("silero-vad-pkg"))
    asr = WhisperEngine(model_path_or_skip("whisper-tiny.en"), cpu_threads=2)
    tts = PiperEngine(model_path_or_skip("piper-joe"))
    turn = load_turn_engine(settings.turn)
    yield SimpleNamespace(vad=vad, asr=asr, tts=tts, turn=turn, llm=None, settings=settings)
    for engine in (vad, asr, tts, turn):
        if engine is not None:
            engine.close()


def speech(text: str, level: float = 1.0) -> np.ndarray:
    audio, rate = synthesize(text)
    return soxr.resample(audio.astype(np.float32) / 32768, rate, SR).astype(np.float32) * level


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(SR * seconds), np.float32)


@dataclass
class Call:
    """A controller under test and everything it sent, with the input position when it was sent."""

    controller: TurnController
    out: list[tuple[float, Any]] = field(default_factory=list)  # (input stream s, event)
    fed_s: float = 0.0

    def events(self, kind: str) -> list[Any]:
        return [e for _, e in self.out if getattr(e, "type", "") == kind]

    def when(self, kind: str) -> list[float]:
        return [t for t, e in self.out if getattr(e, "type", "") == kind]

    def finals(self, kind: str = "agent_text") -> list[Any]:
        return [e for e in self.events(kind) if getattr(e, "final", True)]

    @property
    def audio_s(self) -> float:
        return sum(e.samples for _, e in self.out if isinstance(e, OutFrame)) / SR

    async def feed(self, audio: np.ndarray) -> None:
        """Real time: the controller's timers and the VAD's positions must agree."""
        start, fed0 = time.monotonic(), self.fed_s
        for i in range(0, len(audio), CHUNK):
            await asyncio.sleep(max(0.0, start + i / SR - time.monotonic()))
            await self.controller.feed_audio(audio[i:i + CHUNK])
            self.fed_s = fed0 + (i + CHUNK) / SR

    async def until(self, condition, timeout_s: float = 30.0, *, feed_silence: bool = True) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out; got {[getattr(e, 'type', 'audio') for _, e in self.out]}"
            if feed_silence:
                await self.feed(silence(0.1))
            else:
                await asyncio.sleep(0.05)


async def open_test_call(engines, *replies: str, options: dict | None = None) -> tuple[Call, list[asyncio.Task]]:
    settings = engines.settings
    llm = ScriptedLlm(*replies)
    options = {"agent": "assistant", "call": {"reprompt_after_s": None}} | (options or {})
    resolved = resolve_options(options, settings)
    call_engines = SimpleNamespace(vad=engines.vad, asr=engines.asr, tts=engines.tts, turn=engines.turn, llm=llm)
    controller = await open_call(settings, call_engines, resolved, session_id="test", output_codec="pcm16",
                                 output_rate_hz=SR)
    call = Call(controller)

    async def collect() -> None:
        while True:
            call.out.append((call.fed_s, await controller.outbox.get()))

    return call, [asyncio.create_task(controller.run()), asyncio.create_task(collect())]


async def close(call: Call, tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await call.controller.aclose()


def user_turns(call: Call) -> list[str]:
    return [m["content"] for m in call.controller.speaker.history if m["role"] == "user"]


# ------------------------------------------------------------------ end of turn and continuation


def test_a_pause_inside_a_sentence_gives_one_turn_with_both_halves(engines):
    async def run():
        call, tasks = await open_test_call(engines, "A table for six on Sunday, noted.", "Noted again.")
        await call.feed(silence(0.5))
        await call.feed(speech("I would like a table for"))
        await call.feed(silence(1.0))
        await call.feed(speech("six people on Sunday."))
        await call.until(lambda: call.finals() and not call.controller.busy)
        await call.feed(silence(1.0))
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    said = user_turns(call)
    assert len(said) == 1, said
    assert "table" in said[0].lower() and "sunday" in said[0].lower(), said
    answered = [e for e in call.finals() if e.turn not in {i.turn for i in call.events("interrupted")}]
    assert len(answered) == 1, call.finals()


def test_a_complete_question_ends_sooner_than_the_maximum_silence(engines):
    """Smart end of turn against a fixed silence as long as its maximum, on the same question."""
    async def ends_after(options: dict) -> float:
        call, tasks = await open_test_call(engines, "Seven.", options=options)
        await call.feed(silence(0.3))
        question = speech("How many days are there in a week?")
        await call.feed(question)
        spoken_end = call.fed_s
        await call.until(lambda: call.events("transcript_final"))
        stopped = call.when("transcript_final")[0] - spoken_end
        verdicts = call.events("end_of_turn")
        await close(call, tasks)
        return stopped, verdicts

    smart, verdicts = asyncio.run(ends_after({"turn": {"mode": "smart", "eagerness": "auto"}}))
    fixed, none = asyncio.run(ends_after({"turn": {"mode": "silence", "max_silence_ms": 2000}}))
    assert verdicts and verdicts[0].complete, verdicts
    assert none == []  # silence mode makes no decisions
    assert fixed >= 1.7 and smart < fixed - 0.7, (smart, fixed)  # the audio ends with ~0.2 s of silence


def test_a_flow_state_can_ask_for_a_longer_maximum_silence(engines):
    """The booking flow's time step waits longer for the end of a turn (its YAML: eagerness low)."""
    async def run():
        call, tasks = await open_test_call(engines, options={"agent": "booking", "call": {"greeting": ""}})
        silences = [call.controller.listener.vad_settings.min_silence_ms]
        call.controller.submit(UserText("Italian for two people please."))
        await call.until(lambda: call.finals() and not call.controller.busy)
        silences.append(call.controller.listener.vad_settings.min_silence_ms)
        state = call.controller.speaker.agent.flow.path
        await close(call, tasks)
        return silences, state

    silences, state = asyncio.run(run())
    assert state.endswith("time"), state
    assert silences == [2000.0, 3000.0]  # auto eagerness, then low in the time step


# ------------------------------------------------------------------ barge-in and backchannels


async def _reply_then(engines, interjection: np.ndarray, after_audio_s: float = 1.0) -> Call:
    call, tasks = await open_test_call(engines, LONG_REPLY, "Sure.")
    call.controller.submit(UserText("Tell me a story."))
    await call.until(lambda: call.audio_s >= after_audio_s)
    await call.feed(interjection)
    await call.until(lambda: not call.controller.busy, timeout_s=60)
    await close(call, tasks)
    return call


def test_a_backchannel_over_the_reply_does_not_cut_it(engines):
    call = asyncio.run(_reply_then(engines, speech("Mm-hmm.")))
    assert call.events("interrupted") == [], call.events("interrupted")
    assert [e.resumed for e in call.events("backchannel")] == [True]
    assert call.controller.speaker.history[-1] == {"role": "assistant", "content": LONG_REPLY}
    assert user_turns(call) == ["Tell me a story."]


def test_a_sound_without_words_over_the_reply_does_not_lose_it(engines):
    murmur = speech("Thank you.", level=1.0)
    murmur *= 10 ** (-42 / 20) / np.sqrt(np.mean(murmur**2))  # too quiet to be words (Whisper's guard)
    call = asyncio.run(_reply_then(engines, murmur))
    assert call.events("interrupted") == []
    assert call.controller.speaker.history[-1] == {"role": "assistant", "content": LONG_REPLY}


def test_words_over_the_reply_cut_it_and_become_the_next_turn(engines):
    call = asyncio.run(_reply_then(engines, speech("Stop, tell me about the weather in Paris instead.")))
    cut = call.events("interrupted")
    assert [c.reason for c in cut] == ["barge_in"], cut
    heard = call.controller.speaker.history[1]["content"]
    assert heard and LONG_REPLY.startswith(heard[:-1].rstrip(".")), heard
    assert "weather" in user_turns(call)[-1].lower()
    assert call.finals()[-1].text == "Sure."


def test_typed_text_over_the_reply_cuts_it_with_an_interrupted_event(engines):
    async def run():
        call, tasks = await open_test_call(engines, LONG_REPLY, "Fine.")
        call.controller.submit(UserText("Tell me a story."))
        await call.until(lambda: call.audio_s >= 0.5)
        call.controller.submit(UserText("Never mind."))
        await call.until(lambda: len(call.finals()) >= 1 and not call.controller.busy)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [c.reason for c in call.events("interrupted")] == ["text"]
    assert call.finals()[-1].text == "Fine."


# ------------------------------------------------------------------ the call's lifecycle


def test_the_agent_greets_first_when_it_has_a_greeting(engines):
    async def run():
        call, tasks = await open_test_call(engines, options={"call": {"greeting": "Hello, how can I help?",
                                                                       "reprompt_after_s": None}})
        await call.until(lambda: call.finals() and not call.controller.busy)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [(e.turn, e.text) for e in call.finals()] == [(1, "Hello, how can I help?")]
    assert call.audio_s > 0.5
    assert call.controller.speaker.history == [{"role": "assistant", "content": "Hello, how can I help?"}]


def test_silence_gets_a_reprompt_then_a_goodbye_and_the_call_ends(engines):
    async def run():
        call, tasks = await open_test_call(engines, options={"call": {
            "reprompt_after_s": 1.0, "max_reprompts": 1, "reprompt_line": "Are you still there?",
            "no_response_line": "Goodbye for now."}})
        await call.until(lambda: call.controller.ended.is_set(), timeout_s=40)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [e.text for e in call.finals()] == ["Are you still there?", "Goodbye for now."]
    assert [e.reason for e in call.events("call_ending")] == ["no_response"]
    assert call.controller.end_reason == "no_response"


def test_speech_resets_the_reprompt_count(engines):
    async def run():
        call, tasks = await open_test_call(engines, "Sure.", options={"call": {
            "reprompt_after_s": 1.5, "max_reprompts": 1, "reprompt_line": "Are you still there?"}})
        await call.until(lambda: call.finals())  # the first re-prompt
        await call.feed(speech("Yes, I am here."))
        await call.until(lambda: len(call.finals()) >= 3, timeout_s=40)  # answer, then a re-prompt again
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [e.text for e in call.finals()][:3] == ["Are you still there?", "Sure.", "Are you still there?"]
    assert call.events("call_ending") == []


def test_the_call_ends_at_its_maximum_duration(engines):
    async def run():
        call, tasks = await open_test_call(engines, LONG_REPLY, options={"call": {
            "max_call_s": 2.0, "max_call_line": "Time is up, goodbye.", "reprompt_after_s": None}})
        call.controller.submit(UserText("Tell me a story."))
        await call.until(lambda: call.controller.ended.is_set(), timeout_s=40)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [c.reason for c in call.events("interrupted")] == ["call_end"]
    assert call.finals()[-1].text == "Time is up, goodbye."
    assert [e.reason for e in call.events("call_ending")] == ["max_duration"]


def test_the_hang_up_tool_ends_the_call_after_the_goodbye(engines):
    async def run():
        call, tasks = await open_test_call(engines, '{"name": "hang_up", "arguments": {}}', "Goodbye, take care!")
        call.controller.submit(UserText("That's all I needed, thanks."))
        await call.until(lambda: call.controller.ended.is_set(), timeout_s=40)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert [e.name for e in call.events("tool_call")] == ["hang_up"]
    assert "goodbye" in call.finals()[-1].text.lower()
    assert [e.reason for e in call.events("call_ending")] == ["hang_up"]
    last_audio = max(t for t, e in call.out if isinstance(e, OutFrame))
    assert call.when("call_ending")[0] >= last_audio  # the goodbye was sent before the call ends


def test_a_flow_reaching_its_goodbye_state_ends_the_call(engines):
    async def run():
        call, tasks = await open_test_call(engines)
        call.controller.submit(UserText("Okay, bye!"))  # the flows' global goodbye intent
        await call.until(lambda: call.controller.ended.is_set(), timeout_s=40)
        await close(call, tasks)
        return call

    call = asyncio.run(run())
    assert "goodbye" in call.finals()[-1].text.lower()
    assert [e.reason for e in call.events("call_ending")] == ["goodbye"]
