"""Token-based TTS through the real server: codec-token LM (tiny random-weight GGUF with the real
vocabulary layout) -> SNAC / DAC (real architecture, random weights) -> Opus frames -> a real client.

Random weights make noise, not speech, so these tests check the path, framing and pacing; speech
quality is covered by the Piper tests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from conftest import start_server

from voice.client import ClientOptions, ReceivedAudio, VoiceClient
from voice.protocol import Flags
from voice.protocol import messages as msg

pytestmark = pytest.mark.e2e


async def text_turn(url: str) -> tuple[list[ReceivedAudio], list[float], list]:
    client = VoiceClient(url, ClientOptions(input_codec="pcm16", input_rate_hz=16000,
                                            output_codec="opus", output_rate_hz=24000))
    await client.connect()
    await client.send_control(msg.TextInput(text="Say hello to everyone in the room."))
    await client.send_control(msg.EndOfInput())
    audio, arrivals, events = [], [], []
    async for item in client.messages():
        if isinstance(item, ReceivedAudio):
            audio.append(item)
            arrivals.append(time.monotonic())
        else:
            events.append(item)
            if item.type == "input_ended":
                break
    await client.close()
    return audio, arrivals, events


@pytest.mark.parametrize("engine,extra", [("orpheus", {}), ("outetts", {"VOICE_TTS__TOKEN__CODEC_TINY": "true"})])
def test_codec_token_tts_reaches_the_client_as_paced_opus(tmp_path, engine, extra):
    env = {"VOICE_TTS__ENGINE": engine, "VOICE_LLM__MODEL": "smollm2-135m", "VOICE_LLM__MAX_TOKENS": "24",
           "VOICE_TTS__TOKEN__MAX_TOKENS": "210", "VOICE_TTS__TOKEN__SEED": "3", **extra}
    srv = start_server(tmp_path, env=env, timeout_s=240)
    try:
        audio, arrivals, events = asyncio.run(asyncio.wait_for(text_turn(srv.url), 300))
    finally:
        srv.stop()
    replies = [e for e in events if e.type == "agent_text" and e.final]
    assert replies and replies[0].text, [e.type for e in events]
    assert len(audio) >= 5, f"only {len(audio)} audio frames"
    assert all(len(a.samples) == 480 for a in audio), "Opus 20 ms frames at 24 kHz decode to 480 samples"
    assert audio[0].flags & Flags.SEGMENT_START
    samples = np.concatenate([a.samples for a in audio]).astype(np.float32)
    assert np.abs(samples).max() > 100, "the codec produced silence"
    timestamps = [a.timestamp for a in audio]
    assert timestamps == sorted(timestamps)
    span_s = arrivals[-1] - arrivals[0]
    audio_s = len(audio) * 0.02
    assert span_s >= 0.5 * audio_s - 0.1, f"{audio_s:.2f} s of audio arrived in {span_s:.2f} s: not paced"
