"""The /twilio endpoint driven by a client that speaks Twilio's Media Streams JSON, like Twilio does.

The fake Twilio side streams a spoken question as base64 μ-law in 20 ms `media` messages, plays
what comes back in real time, echoes each `mark` when the audio before it has played, and on
`clear` drops its buffer and echoes the pending marks (what Twilio documents).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import re
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import start_server
from piper_speech import synthesize
from speech_data import wer
from websockets.asyncio.client import connect

from voice.codecs.g711 import ulaw_decode, ulaw_encode
from voice.codecs.resample import resample

pytestmark = pytest.mark.e2e

QUESTION = "How many days are there in a week?"
STORY = "Tell me a long story about a dragon who learns to bake bread."
INTERRUPTION = "Stop please, I want to ask you something else."
FRAME = 160  # 20 ms at 8 kHz


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("twilio"), env={"VOICE_LLM__TEMPERATURE": "0",
                                                                "VOICE_LLM__MAX_TOKENS": "40"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    from voice.models import model_path

    return WhisperModel(str(model_path("whisper-base")), device="cpu", compute_type="int8", cpu_threads=1)


def spoken(text: str) -> str:
    """The words as the TTS reads them: the small LLM sometimes glues digits to words ("are7")."""
    return re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)


def speech_8k(text: str) -> np.ndarray:
    audio, rate = synthesize(text)
    return (resample(audio.astype(np.float32) / 32768, rate, 8000) * 32767).astype(np.int16)


class FakeTwilio:
    """One Media Streams call: sends the caller's audio, 'plays' the agent's, answers marks."""

    def __init__(self, ws, stream_sid: str = "MZ00000000000000000000000000000001"):
        self.ws, self.sid = ws, stream_sid
        self.seq = 0
        self.buffer: list[np.ndarray] = []        # agent audio waiting to be played
        self.queued_samples = 0                    # everything ever received
        self.played_samples = 0
        self.pending_marks: list[tuple[int, str]] = []  # (queued position when sent, name)
        self.echoed: list[str] = []
        self.received: list[np.ndarray] = []
        self.first_media_at: float | None = None
        self.clears: list[float] = []
        self.media_after_clear = 0
        self.to_say: collections.deque[np.ndarray] = collections.deque()  # caller audio, 20 ms frames

    async def send(self, event: str, **fields) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"event": event, "sequenceNumber": str(self.seq), "streamSid": self.sid,
                                       **fields}))

    async def start(self) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send("start", start={
            "accountSid": "AC0", "streamSid": self.sid, "callSid": "CA0", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}, "customParameters": {}})

    async def say(self, pcm: np.ndarray) -> None:
        """Queue caller audio on the line and wait until it has been sent (in real time)."""
        self.to_say.extend(pcm[pos:pos + FRAME] for pos in range(0, len(pcm) - FRAME + 1, FRAME))
        while self.to_say:
            await asyncio.sleep(0.02)

    async def line(self) -> None:
        """A phone line never goes quiet: 20 ms of the caller's audio, or of silence, every 20 ms."""
        t0, silence = time.monotonic(), np.zeros(FRAME, np.int16)
        for i in itertools.count():
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
            chunk = self.to_say.popleft() if self.to_say else silence
            payload = base64.b64encode(ulaw_encode(chunk)).decode()
            await self.send("media", media={"track": "inbound", "chunk": str(i + 1),
                                            "timestamp": str(i * 20), "payload": payload})

    async def listen(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            assert msg.get("streamSid") == self.sid, msg
            if msg["event"] == "media":
                pcm = ulaw_decode(base64.b64decode(msg["media"]["payload"]))
                self.first_media_at = self.first_media_at or time.monotonic()
                self.received.append(pcm)
                self.buffer.append(pcm)
                self.queued_samples += len(pcm)
                if self.clears and time.monotonic() - self.clears[-1] < 0.3:
                    self.media_after_clear += 1
            elif msg["event"] == "mark":
                self.pending_marks.append((self.queued_samples, msg["mark"]["name"]))
            elif msg["event"] == "clear":
                self.clears.append(time.monotonic())
                self.buffer.clear()
                self.queued_samples = self.played_samples
                for _, name in self.pending_marks:  # Twilio echoes marks that were cleared
                    await self.send("mark", mark={"name": name})
                self.pending_marks.clear()

    async def play(self) -> None:
        """Consume 20 ms of buffered agent audio every 20 ms; echo marks whose audio has played."""
        while True:
            await asyncio.sleep(0.02)
            if self.buffer:
                chunk = self.buffer.pop(0)
                self.played_samples += len(chunk)
            while self.pending_marks and self.pending_marks[0][0] <= self.played_samples:
                _, name = self.pending_marks.pop(0)
                self.echoed.append(name)
                await self.send("mark", mark={"name": name})


async def call(url: str, script) -> FakeTwilio:
    async with connect(url.replace("/ws", "/twilio")) as ws:
        twilio = FakeTwilio(ws)
        await twilio.start()
        tasks = [asyncio.create_task(twilio.listen()), asyncio.create_task(twilio.play()),
                 asyncio.create_task(twilio.line())]
        try:
            await script(twilio)
            await twilio.send("stop", stop={"accountSid": "AC0", "callSid": "CA0"})
            await asyncio.sleep(0.3)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return twilio


def logged(server, stream_sid: str, event: str) -> list[str]:
    pattern = rf"twilio call event stream={stream_sid} event={event} text=(?:'([^']*)'|(\S*))"
    return [a or b for a, b in re.findall(pattern, server.log())]


async def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_a_spoken_question_gets_transcribed_and_a_spoken_reply_with_marks(voice_server, whisper, tmp_path):
    question = speech_8k(QUESTION)

    async def script(twilio: FakeTwilio) -> None:
        await twilio.say(np.concatenate([np.zeros(4000, np.int16), question, np.zeros(8000, np.int16)]))
        await wait_until(lambda: twilio.first_media_at, 60, "the reply")
        # the reply is over once its last mark came back and nothing new arrived for a second
        await wait_until(lambda: twilio.echoed and not twilio.pending_marks and not twilio.buffer
                         and time.monotonic() - twilio.first_media_at > 1.5, 60, "the reply to play out")

    twilio = asyncio.run(call(voice_server.url, script))
    heard = logged(voice_server, twilio.sid, "transcript_final")
    said = " ".join(logged(voice_server, twilio.sid, "agent_text"))
    reply = np.concatenate(twilio.received)
    sf.write(str(tmp_path / "reply.wav"), reply, 8000, subtype="PCM_16")
    segments, _ = whisper.transcribe(resample(reply.astype(np.float32) / 32768, 8000, 16000), language="en",
                                     beam_size=1, condition_on_previous_text=False)
    phone_heard = " ".join(s.text.strip() for s in segments)
    print(f"\nserver heard {heard}, agent said {said!r}, caller heard {phone_heard!r}, marks {twilio.echoed}")
    assert heard and wer(QUESTION, heard[0]) <= 0.35, heard
    # one short sentence through 8 kHz μ-law: "There are" heard as "They're" alone is 2 of 7 words
    assert said and wer(spoken(said), phone_heard) <= 0.5, (said, phone_heard)
    assert len(reply) > 8000  # more than a second of agent audio
    assert twilio.echoed and not twilio.clears


def test_speaking_over_the_agent_clears_its_audio(voice_server):
    story, interruption = speech_8k(STORY), speech_8k(INTERRUPTION)

    async def script(twilio: FakeTwilio) -> None:
        # the line keeps sending silence after the request (FakeTwilio.line), as a phone does
        await twilio.say(np.concatenate([np.zeros(4000, np.int16), story, np.zeros(16000, np.int16)]))
        await wait_until(lambda: twilio.first_media_at, 60, "the story to start")
        await wait_until(lambda: twilio.played_samples >= 8000, 10, "a second of the story to play")
        await twilio.say(np.concatenate([interruption, np.zeros(8000, np.int16)]))
        await wait_until(lambda: twilio.clears, 15, "a clear message")

    twilio = asyncio.run(call(voice_server.url, script))
    interrupted = logged(voice_server, twilio.sid, "interrupted")
    print(f"\nclears {len(twilio.clears)}, marks echoed {twilio.echoed}, played {twilio.played_samples} samples")
    assert twilio.clears and interrupted
    assert twilio.media_after_clear <= 2  # the agent fell silent at once (a frame in flight at most)


def test_when_the_agent_ends_the_call_the_stream_is_closed_after_its_goodbye(voice_server):
    """The caller presses # (the flows' goodbye key): the agent says goodbye, then the server closes
    the stream (with <Connect><Stream>, Twilio goes on to the next TwiML verb: <Hangup/>)."""
    closed: dict = {}

    async def run() -> FakeTwilio:
        async with connect(voice_server.url.replace("/ws", "/twilio")) as ws:
            twilio = FakeTwilio(ws)
            await twilio.start()
            tasks = [asyncio.create_task(twilio.play()), asyncio.create_task(twilio.line())]
            await asyncio.sleep(1.0)
            await twilio.send("dtmf", dtmf={"track": "inbound_track", "digit": "#"})
            try:
                await asyncio.wait_for(twilio.listen(), 60)  # returns when the server closes
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            closed.update(code=ws.close_code, at=time.monotonic())
            return twilio

    twilio = asyncio.run(run())
    assert closed["code"] == 1000, closed
    assert sum(len(c) for c in twilio.received) > 8000 * 0.8  # the goodbye was sent before the close
    assert logged(voice_server, twilio.sid, "call_ending") == ["goodbye"]


# --- streamdouble: an independent Twilio Media Streams simulator (PyPI), not written by us ---------

def wav_of(tmp_path, name: str, text: str) -> str:
    """Piper speech as a WAV file: streamdouble reads a file and makes the 8 kHz μ-law itself."""
    audio, rate = synthesize(text)
    path = tmp_path / f"{name}.wav"
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return str(path)


def phone_heard(whisper, reply: np.ndarray) -> str:
    """What a caller hears in the agent's 8 kHz reply, by Whisper base."""
    segments, _ = whisper.transcribe(resample(reply.astype(np.float32) / 32768, 8000, 16000), language="en",
                                     beam_size=1, condition_on_previous_text=False)
    return " ".join(s.text.strip() for s in segments)


def streamdouble_config(**impairments):
    from streamdouble.chaos import Impairments
    from streamdouble.session import SessionConfig

    # a CPU box answers in seconds, not the simulator's default 10 s; the reply ends after 2 s quiet
    return SessionConfig(response_timeout_s=45.0, quiet_period_s=2.0, max_drain_s=60.0,
                         impairments=Impairments(**impairments), chaos_seed=7)


@pytest.mark.parametrize("network", [{}, {"loss": 0.05, "jitter_ms": 40.0}], ids=["clean", "5%-loss-40ms-jitter"])
def test_streamdouble_call_gets_the_question_heard_and_a_spoken_answer(voice_server, whisper, tmp_path, network):
    """streamdouble streams the question, keeps the line open with silence, plays the reply in real
    time and echoes marks like Twilio; it reports any protocol violation of ours."""
    from streamdouble import api

    report = asyncio.run(api.call(voice_server.url.replace("/ws", "/twilio"),
                                  audio_path=wav_of(tmp_path, "question", QUESTION),
                                  config=streamdouble_config(**network)))
    sid = report.result.identity.stream_sid
    heard = logged(voice_server, sid, "transcript_final")
    said = " ".join(logged(voice_server, sid, "agent_text"))
    reply_heard = phone_heard(whisper, ulaw_decode(report.result.audio_received))
    print(f"\n{network or 'clean'}: dropped {report.result.frames_dropped} frames, server heard {heard}, "
          f"agent said {said!r}, caller heard {reply_heard!r}, first audio {report.result.time_to_first_audio_s}")
    assert report.violations == [], report.violations
    assert report.result.time_to_first_audio_s is not None and not report.result.closed_early
    assert report.result.marks_echoed and report.result.clears_received == 0
    assert heard and wer(QUESTION, heard[0]) <= 0.35, heard
    assert said and wer(spoken(said), reply_heard) <= 0.5, (said, reply_heard)


def test_streamdouble_barge_in_scenario_gets_a_clear(voice_server, tmp_path):
    """streamdouble's own scenario vocabulary: ask for a story, talk over it, expect `clear`."""
    from streamdouble import api
    from streamdouble.scenario import parse

    scenario = parse({"name": "caller talks over the story", "steps": [
        {"say": wav_of(tmp_path, "story", STORY)},
        {"wait_for": {"event": "audio", "timeout": 45}},
        {"wait": 1.5},
        {"say": wav_of(tmp_path, "interruption", INTERRUPTION)},
        {"wait_for": {"event": "clear", "timeout": 15}},
        {"expect": "clear"},
        {"wait": 1.0},
    ]})
    report = asyncio.run(api.run_scenario(voice_server.url.replace("/ws", "/twilio"), scenario,
                                          config=streamdouble_config()))
    sid = report.result.identity.stream_sid
    print(f"\nexpectations {report.result.expectations}, clears {report.result.clears_received}, "
          f"interrupted {logged(voice_server, sid, 'interrupted')}")
    assert report.violations == [], report.violations
    assert report.result.expectations and not report.result.failed_expectations, report.result.expectations
    assert logged(voice_server, sid, "interrupted")
