"""Real OpenAI Realtime clients driven against a /v1/realtime server: the openai SDK's
`client.realtime.connect` and LiveKit Agents' `RealtimeModel` (livekit-plugins-openai). Each sends
one user turn (typed text, or 24 kHz PCM16 audio) and collects every server event it gets back,
until the response is done. For the door's tests; also a command:

    python tests/realtime_peers.py ws://127.0.0.1:8765/v1 --client openai --text "What time is it?"
    python tests/realtime_peers.py ws://127.0.0.1:8765/v1 --client livekit --wav question_24k.wav
    python tests/realtime_peers.py --scripted --client livekit --text hi   # against ScriptedServer

`ScriptedServer` answers every turn with the same fixed reply, built with voice/doors/realtime_wire:
it checks the wire format with real clients (what they send parses, what we send they read), not
the agent. What each client needs from a server: docs/realtime.md, "Clients".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice.doors import realtime_wire as rw

PCM = {"type": "audio/pcm", "rate": 24000}
CHUNK_BYTES = 4800  # 100 ms of 24 kHz PCM16
MIC_CHUNK_MS = 40
MIC_CHUNK_BYTES = 24 * 2 * MIC_CHUNK_MS  # 40 ms of 24 kHz PCM16: what a live client appends at a time


@dataclass
class PeerTurn:
    """What one client got back for one turn: every server event (audio as its size), in order."""

    client: str
    events: list[dict[str, Any]] = field(default_factory=list)
    transcript: str = ""      # the assistant's words, as the client assembled them
    audio_bytes: int = 0      # assistant audio the client delivered (PCM16 24 kHz)
    function_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def add(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("delta"), str) and event["type"].endswith("audio.delta"):
            event = {**event, "delta": f"<{len(base64.b64decode(event['delta']))} bytes>"}
        self.events.append(event)


async def openai_sdk_turn(base_url: str, *, text: str | None = None, pcm16: bytes | None = None,
                          model: str = "voice-agent", api_key: str = "unused", timeout_s: float = 30) -> PeerTurn:
    """The openai SDK: session.update (turn detection off), the user turn (conversation.item.create,
    or input_audio_buffer.append + commit), response.create; then reads until response.done."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=api_key, websocket_base_url=base_url)
    turn = PeerTurn("openai")
    try:
        async with client.realtime.connect(model=model) as conn:
            await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"], "audio": {
                "input": {"format": PCM, "turn_detection": None}, "output": {"format": PCM}}})
            if text is not None:
                await conn.conversation.item.create(item={
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
            else:
                for start in range(0, len(pcm16 or b""), CHUNK_BYTES):
                    chunk = pcm16[start:start + CHUNK_BYTES]
                    await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                await conn.input_audio_buffer.commit()
            await conn.response.create()
            async with asyncio.timeout(timeout_s):
                async for event in conn:
                    turn.add(event.to_dict())
                    if event.type == "response.output_audio.delta":
                        turn.audio_bytes += len(base64.b64decode(event.delta))
                    elif event.type == "response.output_audio_transcript.delta":
                        turn.transcript += event.delta
                    elif event.type == "response.done":
                        break
    finally:
        await client.close()
    return turn


async def livekit_turn(base_url: str, *, text: str | None = None, pcm16: bytes | None = None,
                       model: str = "voice-agent", api_key: str = "unused", timeout_s: float = 30) -> PeerTurn:
    """LiveKit's RealtimeModel session, as an AgentSession drives it: session.update on connect,
    the user turn (update_chat_ctx -> conversation.item.create, or push_audio + commit_audio), then
    generate_reply (response.create) and its message and function streams."""
    from livekit import rtc
    from livekit.agents import llm
    from livekit.plugins.openai.realtime import RealtimeModel

    turn = PeerTurn("livekit")
    realtime = RealtimeModel(model=model, base_url=base_url, api_key=api_key, modalities=["audio"],
                             turn_detection=None)
    session = realtime.session()
    session.on("openai_server_event_received", turn.add)
    try:
        async with asyncio.timeout(timeout_s):
            if text is not None:
                chat = session.chat_ctx.copy()
                chat.add_message(role="user", content=text)
                await session.update_chat_ctx(chat)
            else:
                for start in range(0, len(pcm16 or b""), CHUNK_BYTES):
                    chunk = pcm16[start:start + CHUNK_BYTES]
                    session.push_audio(rtc.AudioFrame(data=chunk, sample_rate=24000, num_channels=1,
                                                      samples_per_channel=len(chunk) // 2))
                session.commit_audio()
            generation: llm.GenerationCreatedEvent = await session.generate_reply()
            async for message in generation.message_stream:
                async for piece in message.text_stream:
                    turn.transcript += str(piece)
                async for frame in message.audio_stream:
                    turn.audio_bytes += frame.samples_per_channel * 2
            async for call in generation.function_stream:
                turn.function_calls.append({"name": call.name, "call_id": call.call_id, "arguments": call.arguments})
    finally:
        await session.aclose()
        await realtime.aclose()
    return turn


PEERS = {"openai": openai_sdk_turn, "livekit": livekit_turn}


class SdkCall:
    """An open openai SDK Realtime connection, driven event by event: a reader keeps every server
    event (as a dict, with its arrival time `at`, time.monotonic()), `wait` finds the next one,
    and a microphone (`mic`) streams audio in real time like a live client, silence in between.

        async with SdkCall.connect(url, api_key=token) as call:
            await call.say(pcm16_24k)
            done = await call.wait("response.done")
    """

    def __init__(self, conn: Any):
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.audio: dict[str, bytearray] = {}   # assistant item id -> its PCM16 24 kHz audio
        self._arrived = asyncio.Event()
        self._to_say: list[bytes] = []          # mic chunks not yet sent
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, base_url: str, *, api_key: str = "unused", mic: bool = False,
                      model: str = "voice-agent") -> Any:
        """`mic`: stream audio all the time (speech when `say` queued some, silence otherwise)."""
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=api_key, websocket_base_url=base_url)
        try:
            async with client.realtime.connect(model=model) as conn:
                call = cls(conn)
                call._tasks.append(asyncio.create_task(call._read()))
                if mic:
                    call._tasks.append(asyncio.create_task(call._mic()))
                try:
                    yield call
                finally:
                    for task in call._tasks:
                        task.cancel()
                    await asyncio.gather(*call._tasks, return_exceptions=True)
        finally:
            await client.close()

    async def _read(self) -> None:
        async for event in self.conn:
            data = event.to_dict()
            data["at"] = time.monotonic()
            if data["type"] == "response.output_audio.delta":
                self.audio.setdefault(data["item_id"], bytearray()).extend(base64.b64decode(data.pop("delta")))
            self.events.append(data)
            self._arrived.set()

    async def _mic(self) -> None:
        """MIC_CHUNK_BYTES every MIC_CHUNK_MS on one clock: queued speech first, else silence."""
        silence = bytes(MIC_CHUNK_BYTES)
        t0 = time.monotonic()
        for n in itertools.count():
            chunk = self._to_say.pop(0) if self._to_say else silence
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await asyncio.sleep(max(0.0, t0 + (n + 1) * MIC_CHUNK_MS / 1000 - time.monotonic()))

    async def say(self, pcm16: bytes) -> float:
        """Speak through the mic; returns when the last chunk is sent: the time (monotonic) of
        the end of the audio given (trailing silence included)."""
        self._to_say.extend(pcm16[i:i + MIC_CHUNK_BYTES] for i in range(0, len(pcm16), MIC_CHUNK_BYTES))
        while self._to_say:
            await asyncio.sleep(MIC_CHUNK_MS / 1000 / 2)
        return time.monotonic()

    async def send_chunks(self, pcm16: bytes) -> None:
        """Append audio paced in real time, without a mic running (turn detection off)."""
        t0 = time.monotonic()
        for n, i in enumerate(range(0, len(pcm16), MIC_CHUNK_BYTES)):
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(pcm16[i:i + MIC_CHUNK_BYTES]).decode())
            await asyncio.sleep(max(0.0, t0 + (n + 1) * MIC_CHUNK_MS / 1000 - time.monotonic()))

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def send_raw(self, text: str) -> None:
        """Any text, as it is (malformed JSON, unknown events)."""
        await self.conn.send_raw(text)

    def mark(self) -> int:
        """Where the event log is now: `wait(..., after=mark)` looks only at later events."""
        return len(self.events)

    async def wait(self, kind: str, after: int = 0, timeout_s: float = 30, **fields: Any) -> dict[str, Any]:
        """The first event of type `kind` (with these field values) from index `after` on."""
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events[after:]:
                    if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                        return event
                self._arrived.clear()
                await self._arrived.wait()

    def of(self, kind: str, after: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[after:] if e["type"] == kind]


class ScriptedServer:
    """A /v1/realtime endpoint that parses every client event with realtime_wire and answers each
    response.create with `reply` (transcript) and `reply_ms` of a 440 Hz tone. Records what it got:
    `requests` (path, headers), `received` (parsed events), `refused` (RealtimeWireErrors)."""

    def __init__(self, reply: str = "Hello from the scripted server.", reply_ms: int = 300):
        self.reply, self.reply_ms = reply, reply_ms
        self.requests: list[dict[str, Any]] = []
        self.received: list[Any] = []
        self.refused: list[rw.RealtimeWireError] = []

    async def __aenter__(self) -> str:
        from websockets.asyncio.server import serve

        self._server = await serve(self._session, "127.0.0.1", 0, max_size=None)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, ws: Any) -> None:
        request = ws.request
        self.requests.append({"path": request.path, "headers": dict(request.headers.raw_items())})
        model = parse_qs(urlparse(request.path).query).get("model", [None])[0]
        self.session = rw.Session(object="realtime.session", id=rw.new_id("sess"), model=model)
        self.items: list[str] = []
        self.audio = bytearray()
        await ws.send(rw.encode(rw.SessionCreated(session=self.session)))
        async for raw in ws:
            try:
                event = rw.parse_client_event(raw)
            except rw.RealtimeWireError as e:
                self.refused.append(e)
                await ws.send(rw.encode(rw.wire_error_event(e)))
                continue
            self.received.append(event)
            for reply in self._answer(event):
                await ws.send(rw.encode(reply))

    def _place(self, item: Any, after: str | None = None) -> list[Any]:
        previous = self.items[-1] if self.items and after is None else (None if after == "root" else after)
        self.items.append(item.id)
        return [rw.ConversationItemAdded(item=item, previous_item_id=previous),
                rw.ConversationItemDone(item=item, previous_item_id=previous)]

    def _answer(self, event: Any) -> list[Any]:
        if isinstance(event, rw.SessionUpdate):
            self.session = rw.apply_session_update(self.session, event.session)
            return [rw.SessionUpdated(session=self.session)]
        if isinstance(event, rw.InputAudioBufferAppend):
            self.audio += event.audio
            return []
        if isinstance(event, rw.InputAudioBufferCommit):
            item = rw.MessageItem(id=rw.new_id("item"), role="user", content=[rw.InputAudio(transcript=None)])
            self.audio.clear()
            committed = rw.InputAudioBufferCommitted(item_id=item.id, previous_item_id=self.items[-1:] or None)
            return [committed, *self._place(item)]
        if isinstance(event, rw.ConversationItemCreate):
            item = event.item.model_copy(update={"id": event.item.id or rw.new_id("item")})
            return self._place(item, event.previous_item_id)
        if isinstance(event, rw.ResponseCreate):
            return self._respond(event.response)
        if isinstance(event, rw.ResponseCancel):
            return [rw.error_event("response_cancel_not_active", "There is no active response.", event.event_id)]
        return []

    def _respond(self, params: rw.ResponseParams) -> list[Any]:
        import numpy as np

        samples = np.arange(24 * self.reply_ms)
        tone = rw.encode_audio((np.sin(samples * 2 * np.pi * 440 / 24000) * 8000).astype(np.int16), rw.PcmFormat())
        response = rw.Response(conversation_id="conv_scripted", metadata=params.metadata)
        item = rw.MessageItem(id=rw.new_id("item"), role="assistant", status="in_progress",
                              content=[rw.OutputAudio(transcript="")])
        at = {"response_id": response.id, "item_id": item.id, "output_index": 0, "content_index": 0}
        done_item = item.model_copy(update={"status": "completed", "content": [rw.OutputAudio(transcript=self.reply)]})
        finished = response.model_copy(update={"status": "completed", "output": [done_item],
                                               "usage": rw.Usage.of(10, 0, 5, 20)})
        previous = self.items[-1] if self.items else None
        self.items.append(item.id)
        return [
            rw.ResponseCreated(response=response),
            rw.ResponseOutputItemAdded(response_id=response.id, output_index=0, item=item),
            rw.ConversationItemAdded(item=item, previous_item_id=previous),
            rw.ResponseContentPartAdded(**at, part=rw.ContentPart(type="audio", transcript="")),
            rw.ResponseOutputAudioTranscriptDelta(**at, delta=self.reply),
            rw.ResponseOutputAudioDelta(**at, delta=tone),
            rw.ResponseOutputAudioDone(**at),
            rw.ResponseOutputAudioTranscriptDone(**at, transcript=self.reply),
            rw.ResponseContentPartDone(**at, part=rw.ContentPart(type="audio", transcript=self.reply)),
            rw.ResponseOutputItemDone(response_id=response.id, output_index=0, item=done_item),
            rw.ConversationItemDone(item=done_item, previous_item_id=previous),
            rw.ResponseDone(response=finished),
        ]


def read_wav_24k(path: str) -> bytes:
    """PCM16 mono 24 kHz frames of a WAV file (no resampling: give it 24 kHz)."""
    with wave.open(path) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (24000, 1, 2):
            raise SystemExit(f"{path}: need 24 kHz mono 16-bit PCM")
        return wav.readframes(wav.getnframes())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="WebSocket base URL, e.g. ws://127.0.0.1:8765/v1")
    parser.add_argument("--client", choices=sorted(PEERS), default="openai")
    parser.add_argument("--text", help="a typed user turn")
    parser.add_argument("--wav", help="a spoken user turn: 24 kHz mono PCM16 WAV")
    parser.add_argument("--scripted", action="store_true", help="run against ScriptedServer instead of url")
    args = parser.parse_args()
    pcm16 = read_wav_24k(args.wav) if args.wav else None
    text = args.text if args.text is not None or pcm16 else "Hello?"
    async with contextlib.AsyncExitStack() as stack:
        scripted = ScriptedServer() if args.scripted else None
        url = await stack.enter_async_context(scripted) if scripted else args.url
        turn = await PEERS[args.client](url, text=text, pcm16=pcm16)
    for event in turn.events:
        print(json.dumps(event)[:300])
    print(f"\n{turn.client}: {len(turn.events)} events, transcript {turn.transcript!r}, {turn.audio_bytes} audio bytes")
    if scripted:
        print(f"scripted server: {scripted.requests[0]}, refused {[(e.code, e.message) for e in scripted.refused]}")


if __name__ == "__main__":
    asyncio.run(main())
