"""The OpenAI Realtime door (/v1/realtime) driven by real clients against the real server.

The openai SDK's `client.realtime.connect` (through `websocket_base_url`), event by event with
tests/realtime_peers.py's SdkCall (a microphone that streams Piper speech in real time, silence
in between), and LiveKit's RealtimeModel. Real models: Silero VAD, Whisper tiny.en, Qwen 0.5B,
Piper; the agent's audio is transcribed back with Whisper base to check what it said.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import numpy as np
import pytest
from conftest import start_server
from piper_speech import synthesize
from realtime_peers import SdkCall, livekit_turn

from voice.codecs.resample import resample

pytestmark = pytest.mark.e2e

MAX_APPEND_BYTES = 65536
WEATHER_TOOL = {
    "type": "function", "name": "get_weather",
    "description": "Look up the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
                   "required": ["city"]},
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """One server for the module: deterministic, short replies; a small append limit to test."""
    srv = start_server(tmp_path_factory.mktemp("realtime"), env={
        "VOICE_LLM__TEMPERATURE": "0", "VOICE_LLM__MAX_TOKENS": "40",
        "VOICE_REALTIME__MAX_APPEND_BYTES": str(MAX_APPEND_BYTES)})
    yield srv.url.removesuffix("/ws") + "/v1"
    log = srv.log()
    srv.stop()
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    from voice.models import model_path

    return WhisperModel(str(model_path("whisper-base")), device="cpu", compute_type="int8", cpu_threads=1)


def speech_24k(text: str, pad_s: float = 0.3) -> bytes:
    """Piper's speech of `text` as PCM16 24 kHz, with `pad_s` of silence after it."""
    audio, rate = synthesize(text)
    pcm = resample(audio.astype(np.float32) / 32768, rate, 24000)
    pcm = np.concatenate([pcm, np.zeros(int(pad_s * 24000), np.float32)])
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def heard(whisper: Any, pcm16_24k: bytes) -> str:
    audio = resample(np.frombuffer(pcm16_24k, "<i2").astype(np.float32) / 32768, 24000, 16000)
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments)


def user_text(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


async def typed_turn(call: SdkCall, text: str, timeout_s: float = 60) -> dict[str, Any]:
    """A typed user turn and its response.done."""
    mark = call.mark()
    await call.send(user_text(text))
    await call.send({"type": "response.create"})
    return await call.wait("response.done", after=mark, timeout_s=timeout_s)


async def configure(call: SdkCall, **session: Any) -> None:
    mark = call.mark()
    await call.send({"type": "session.update", "session": {"type": "realtime", **session}})
    await call.wait("session.updated", after=mark)


def message_transcript(done: dict[str, Any]) -> str:
    return " ".join(part.get("transcript") or part.get("text") or "" for item in done["response"]["output"]
                    if item["type"] == "message" for part in item["content"])


# ---------------------------------------------------------------------------- 1. a spoken turn

def test_spoken_question_is_heard_and_answered_in_audio_that_says_the_transcript(base_url, whisper):
    question = speech_24k("How many days are there in a week?", pad_s=0.2)

    async def scenario() -> SdkCall:
        async with SdkCall.connect(base_url, mic=True) as call:
            await call.wait("session.created")
            await call.say(question)
            await call.wait("response.done", timeout_s=60)
            return call

    call = asyncio.run(scenario())
    types = [e["type"] for e in call.events]
    started = types.index("input_audio_buffer.speech_started")
    stopped = types.index("input_audio_buffer.speech_stopped")
    completed = call.of("conversation.item.input_audio_transcription.completed")
    assert started < stopped < types.index("conversation.item.input_audio_transcription.completed"), types[:20]
    assert {"days", "week"} <= set(words(completed[0]["transcript"])), completed[0]
    assert completed[0]["usage"] == {"type": "duration", "seconds": pytest.approx(2.0, abs=1.2)}
    done = call.of("response.done")[0]
    assert done["response"]["status"] == "completed"
    usage = done["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0, usage
    said = call.of("response.output_audio_transcript.done")[0]
    assert said["transcript"].strip() == message_transcript(done).strip()
    audio = bytes(call.audio[said["item_id"]])
    assert len(audio) > 24000 * 2 * 0.5  # at least half a second of speech
    written, spoken = set(words(said["transcript"])), set(words(heard(whisper, audio)))
    overlap = len(written & spoken) / max(1, len(written))
    assert overlap >= 0.6, (said["transcript"], spoken)


# ---------------------------------------------------------------------------- 2. the client's tool

def test_a_client_tool_call_is_handed_to_the_client_and_its_result_is_used(base_url):
    async def scenario() -> tuple[dict, dict, SdkCall]:
        async with SdkCall.connect(base_url) as call:
            await configure(call, tools=[WEATHER_TOOL], tool_choice="auto",
                            instructions="You are a voice assistant. For any question about the weather, call "
                                         "get_weather; never guess the weather. Answer in one short sentence.",
                            audio={"input": {"turn_detection": None}})
            first = await typed_turn(call, "What is the weather like in Chicago right now?")
            # nobody runs the tool: no further response until the client answers
            await asyncio.sleep(1.0)
            assert len(call.of("response.created")) == 1
            calls = [item for item in first["response"]["output"] if item["type"] == "function_call"]
            assert calls, first
            mark = call.mark()
            await call.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": calls[0]["call_id"],
                "output": json.dumps({"city": "Chicago", "temperature_c": 17, "conditions": "foggy"})}})
            await call.send({"type": "response.create"})
            second = await call.wait("response.done", after=mark, timeout_s=60)
            return first, second, call

    first, second, call = asyncio.run(scenario())
    output = first["response"]["output"]
    call_item = next(item for item in output if item["type"] == "function_call")
    assert call_item["name"] == "get_weather"
    assert "chicago" in json.loads(call_item["arguments"])["city"].lower()
    assert not [i for i in output if i["type"] == "message" and not message_transcript({"response": {"output": [i]}})]
    done_args = call.of("response.function_call_arguments.done")[0]
    assert (done_args["call_id"], done_args["arguments"]) == (call_item["call_id"], call_item["arguments"])
    assert first["response"]["usage"]["output_tokens"] > 0
    answer = message_transcript(second).lower()
    assert second["response"]["status"] == "completed"
    assert "fog" in answer or re.search(r"\b17\b|seventeen", answer), answer
    assert call.audio  # the answer was spoken too


# ---------------------------------------------------------------------------- 3. barge-in

def test_speaking_over_a_long_reply_cancels_it_and_truncate_cuts_its_item(base_url):
    interruption = speech_24k("Stop please, I want to ask you something else.")

    async def scenario() -> dict[str, Any]:
        async with SdkCall.connect(base_url, mic=True) as call:
            await configure(call, instructions="You are a storyteller. Tell long, detailed stories.")
            mark = call.mark()
            await call.send(user_text("Tell me a long story about a dragon who learns to bake bread."))
            await call.send({"type": "response.create"})
            first_audio = await call.wait("response.output_audio.delta", after=mark, timeout_s=60)
            await asyncio.sleep(1.5)
            talking = call.mark()
            speaking = asyncio.create_task(call.say(interruption))
            started = await call.wait("input_audio_buffer.speech_started", after=talking, timeout_s=15)
            done = await call.wait("response.done", after=mark, timeout_s=15)
            item_id = first_audio["item_id"]
            played_ms = round((started["at"] - first_audio["at"]) * 1000)
            cut = call.mark()
            await call.send({"type": "conversation.item.truncate", "event_id": "evt_truncate", "item_id": item_id,
                             "content_index": 0, "audio_end_ms": played_ms})
            truncated = await call.wait("conversation.item.truncated", after=cut)
            await call.send({"type": "conversation.item.retrieve", "item_id": item_id})
            retrieved = await call.wait("conversation.item.retrieved", after=cut)
            await speaking
            # the interruption is answered; the cut item can no longer be truncated (it is not the latest)
            answer = await call.wait("response.done", after=cut, timeout_s=60)
            late = call.mark()
            await call.send({"type": "conversation.item.truncate", "event_id": "evt_late", "item_id": item_id,
                             "content_index": 0, "audio_end_ms": 100})
            refused = await call.wait("error", after=late)
            return {"call": call, "done": done, "item_id": item_id, "truncated": truncated, "answer": answer,
                    "retrieved": retrieved, "played_ms": played_ms, "mark": mark, "cut": cut, "refused": refused}

    r = asyncio.run(scenario())
    call, done, item_id = r["call"], r["done"], r["item_id"]
    assert done["response"]["status"] == "cancelled", done["response"]["status_details"]
    assert done["response"]["status_details"]["reason"] in ("turn_detected", "client_cancelled")
    done_index = call.events.index(done)
    assert not [e for e in call.events[done_index:] if e["type"] == "response.output_audio.delta"
                and e.get("item_id") == item_id]
    assert (r["truncated"]["item_id"], r["truncated"]["audio_end_ms"]) == (item_id, r["played_ms"])
    assert [e["error"]["event_id"] for e in call.of("error", r["cut"])] == ["evt_late"]
    assert r["answer"]["response"]["status"] == "completed" and message_transcript(r["answer"])
    # what the history keeps is the start of what was written, and less of it
    written = words("".join(e["delta"] for e in call.of("response.output_audio_transcript.delta", r["mark"])
                            if e["item_id"] == item_id))
    kept = words(r["retrieved"]["item"]["content"][0]["text"])
    assert kept == written[:len(kept)] and len(kept) < len(written), (kept, written)


# ---------------------------------------------------------------------------- 4. bad input

BAD_INPUT = {
    "unknown event": ({"type": "conversation.item.explode", "event_id": "evt_unknown"}, "unknown_event"),
    "malformed json": ('{"type": "session.update", "event_id": "evt_json", ', "invalid_json"),
    "missing field": ({"type": "conversation.item.truncate", "event_id": "evt_missing", "content_index": 0,
                       "audio_end_ms": 100}, "missing_required_parameter"),
    "oversize append": ({"type": "input_audio_buffer.append", "event_id": "evt_big",
                         "audio": base64.b64encode(bytes(MAX_APPEND_BYTES + 2)).decode()}, "invalid_value"),
    "not base64": ({"type": "input_audio_buffer.append", "event_id": "evt_b64", "audio": "%%% not base64 %%%"},
                   "invalid_value"),
    "half a sample": ({"type": "input_audio_buffer.append", "event_id": "evt_odd",
                       "audio": base64.b64encode(b"\x01\x02\x03").decode()}, "invalid_value"),
    "unknown call_id": ({"type": "conversation.item.create", "event_id": "evt_call", "item": {
        "type": "function_call_output", "call_id": "call_nobody_made", "output": "{}"}}, "invalid_value"),
}


async def send_bad(call: SdkCall, bad: dict[str, Any] | str) -> dict[str, Any]:
    mark = call.mark()
    await call.send_raw(bad if isinstance(bad, str) else json.dumps(bad))
    return await call.wait("error", after=mark, timeout_s=10)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_gets_an_error_naming_the_event_and_the_session_goes_on(base_url, name):
    bad, code = BAD_INPUT[name]

    async def scenario() -> dict[str, Any]:
        async with SdkCall.connect(base_url) as call:
            await call.wait("session.created")
            error = await send_bad(call, bad)
            await configure(call, audio={"input": {"turn_detection": None}})  # still answering
            return error

    error = asyncio.run(scenario())
    assert error["error"]["code"] == code, error
    expected_id = None if isinstance(bad, str) else bad["event_id"]
    assert error["error"]["event_id"] == expected_id, error
    assert error["error"]["message"]


def test_response_create_while_one_runs_is_refused_and_the_first_goes_on(base_url):
    async def scenario() -> tuple[dict, dict, SdkCall]:
        async with SdkCall.connect(base_url) as call:
            await configure(call, audio={"input": {"turn_detection": None}})
            mark = call.mark()
            await call.send(user_text("Name three colours."))
            await call.send({"type": "response.create", "event_id": "evt_first"})
            await call.send({"type": "response.create", "event_id": "evt_second"})
            error = await call.wait("error", after=mark, timeout_s=10)
            done = await call.wait("response.done", after=mark, timeout_s=60)
            await asyncio.sleep(0.5)
            return error, done, call

    error, done, call = asyncio.run(scenario())
    assert (error["error"]["code"], error["error"]["event_id"]) == ("conversation_already_has_active_response",
                                                                    "evt_second")
    assert done["response"]["status"] == "completed" and message_transcript(done)
    assert len(call.of("response.created")) == len(call.of("response.done")) == 1


def test_garbage_on_one_session_leaves_it_and_its_neighbour_answering(base_url):
    async def garbage(call: SdkCall) -> list[dict[str, Any]]:
        errors = []
        for _ in range(3):
            for bad, _code in BAD_INPUT.values():
                errors.append(await send_bad(call, bad))
        return errors

    async def scenario() -> tuple[list, dict, dict]:
        async with SdkCall.connect(base_url) as bad, SdkCall.connect(base_url) as neighbour:
            await configure(bad, audio={"input": {"turn_detection": None}})
            await configure(neighbour, audio={"input": {"turn_detection": None}})
            started = time.monotonic()
            errors, answer = await asyncio.gather(garbage(bad), typed_turn(neighbour, "What is the capital of France?"))
            assert time.monotonic() - started < 60
            later = await typed_turn(bad, "What is the capital of Italy?")
            return errors, answer, later

    errors, answer, later = asyncio.run(scenario())
    assert len(errors) == 3 * len(BAD_INPUT)
    assert answer["response"]["status"] == "completed" and "paris" in message_transcript(answer).lower()
    assert later["response"]["status"] == "completed" and "rome" in message_transcript(later).lower()


# ---------------------------------------------------------------------------- 5. LiveKit

def test_livekit_realtime_model_gets_a_spoken_reply(base_url):
    pytest.importorskip("livekit.plugins.openai", reason="livekit-plugins-openai is not installed")
    turn = asyncio.run(livekit_turn(base_url, text="What is the capital of France?", timeout_s=60))
    assert "response.done" in turn.types and "error" not in turn.types, turn.types
    assert "paris" in turn.transcript.lower(), turn.transcript
    assert turn.audio_bytes > 24000 * 2 * 0.5
