"""Call recording through the real server: a spoken call leaves a stereo file (caller left, agent right)
aligned to what the client sent and received, plus a JSON of what was said; nothing when off."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import start_server
from piper_speech import synthesize

from voice.client import ClientOptions, ReceivedAudio, VoiceClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RATE = 16000


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    srv = start_server(tmp_path_factory.mktemp("rec"), env={
        "VOICE_LLM__TEMPERATURE": "0", "VOICE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "VOICE_AGENT__RECORDING__FOLDER": str(folder), "VOICE_AGENT__RECORDING__FORMAT": "wav"})
    srv.recordings = folder
    yield srv
    srv.stop()


async def _call(url: str, question: np.ndarray, options: dict) -> dict:
    """Speak in real time on one clock; note where in our own stream the first reply audio arrived."""
    client = VoiceClient(url, ClientOptions(input_codec="pcm16", input_rate_hz=RATE, output_codec="pcm16",
                                            output_rate_hz=RATE, options=options))
    await client.connect()
    sent = {"samples": 0}
    got: dict = {"first_audio_at_sample": None, "events": []}

    async def receive() -> None:
        async for item in client.messages():
            if isinstance(item, ReceivedAudio):
                if got["first_audio_at_sample"] is None:
                    got["first_audio_at_sample"] = sent["samples"]
            else:
                got["events"].append(item.model_dump())
                if item.type == "input_ended":
                    return

    receiver = asyncio.create_task(receive())
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), question, np.zeros(RATE * 6, np.int16)])
    start = time.monotonic()
    for pos in range(0, len(audio), 320):
        await asyncio.sleep(max(0.0, start + pos / RATE - time.monotonic()))
        await client.send_audio(audio[pos:pos + 320])
        sent["samples"] = pos + 320
    await client.end_input()
    await asyncio.wait_for(receiver, 60)
    await client.close()
    return got


def _onset(channel: np.ndarray, threshold: float = 0.02) -> int:
    loud = np.flatnonzero(np.abs(channel) > threshold)
    return int(loud[0]) if len(loud) else -1


def test_a_recorded_call_is_stereo_aligned_and_has_its_transcript(recording_server):
    q, qr = synthesize("How many days are there in a week?")
    question = (soxr.resample(q.astype(np.float32) / 32768, qr, RATE) * 32767).astype(np.int16)
    got = asyncio.run(_call(recording_server.url, question, {"call": {"record": True}}))
    assert got["first_audio_at_sample"] is not None, [e["type"] for e in got["events"]]
    deadline = time.monotonic() + 10
    while not (wavs := sorted(recording_server.recordings.glob("call-*.wav"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(wavs) == 1, list(recording_server.recordings.iterdir())
    audio, rate = sf.read(str(wavs[0]), dtype="float32")
    assert rate == RATE and audio.ndim == 2 and audio.shape[1] == 2
    user, agent = audio[:, 0], audio[:, 1]
    # the caller's speech sits where it was in the stream we sent (after 0.5 s of silence)
    assert abs(_onset(user) - (RATE // 2 + _onset(question.astype(np.float32) / 32768))) <= RATE * 0.03
    # the agent's first audio sits at the moment the client received it (on the client's clock)
    assert abs(_onset(agent) - got["first_audio_at_sample"]) <= RATE * 0.1, (_onset(agent), got)
    assert np.abs(user[_onset(agent):_onset(agent) + RATE // 2]).max() < 0.02  # not the caller's channel
    kept = json.loads(wavs[0].with_suffix(".json").read_text())
    kinds = [e["kind"] for e in kept["events"]]
    assert "transcript_final" in kinds and "agent_text" in kinds, kinds
    said = next(e["data"]["text"] for e in kept["events"] if e["kind"] == "agent_text")
    assert said == next(e["text"] for e in got["events"] if e["type"] == "agent_text" and e["final"])


def test_nothing_is_recorded_unless_the_call_asks(recording_server):
    before = set(recording_server.recordings.iterdir())
    q, qr = synthesize("Hello there.")
    question = (soxr.resample(q.astype(np.float32) / 32768, qr, RATE) * 32767).astype(np.int16)
    asyncio.run(_call(recording_server.url, question, {}))
    time.sleep(1.0)
    assert set(recording_server.recordings.iterdir()) == before
