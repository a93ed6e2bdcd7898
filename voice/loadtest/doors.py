"""The wires a simulated caller can come in by: one small class per door.

A `Door` turns questions into ready-to-send 20 ms frames once (shared by all callers: a hundred
callers must not encode Opus a hundred times over on the box under test) and opens `Line`s. A
`Line` is one call: `send(frame)` paces nothing (the caller does), `events()` yields what the
caller hears, and it keeps the caller's playback clock (`played_until`), because the reply is over
when its audio has played, not when its last frame arrived.

Doors: `ws` (our binary protocol over /ws, with voice/client.py), `twilio` (Twilio Media Streams
JSON over /twilio: connected, start, base64 μ-law media, marks echoed when played, stop) and
`realtime` (the OpenAI Realtime API over /v1/realtime: PCM16 24 kHz appends, the server's own turn
detection, audio deltas back).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voice.client import ClientError, ClientOptions, ReceivedAudio, ServerError, VoiceClient
from voice.codecs.g711 import ulaw_encode
from voice.codecs.opus import OpusEncoder
from voice.loadtest.speech import FRAME_MS, Question
from voice.protocol import ErrorCode, Flags, MessageType

CONNECT_TIMEOUT_S = 15.0
REFUSED_CODES = frozenset({ErrorCode.SERVER_BUSY.value, 503, 1013})  # busy: ERROR, HTTP, close "try again later"


class CallRefused(Exception):
    """The server (or a balancer) said it has no room now: counted as refused, not as an error."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class CallFailed(Exception):
    """The call could not be placed or broke; `code` names the error (an ErrorCode name, HTTP_503...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Heard:
    """One thing the caller heard: `audio` (seconds of reply audio), `reply_done` (the agent's
    reply text is complete), `transcript` (what the server heard), `stages` (the server's turn
    metrics, ms), `error` (a non-fatal error code name)."""

    kind: str
    seconds: float = 0.0
    data: Any = None


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"HTTP_{code}" if 100 <= code < 600 else f"CLOSE_{code}"


async def open_socket(url: str, *, headers: dict[str, str] | None = None,
                      max_size: int | None = 1 << 20) -> ClientConnection:
    """A plain WebSocket to a door; a refusal (HTTP 503/429...) is CallRefused, anything else CallFailed."""
    try:
        return await connect(url, additional_headers=headers, open_timeout=CONNECT_TIMEOUT_S,
                             compression=None, max_size=max_size)
    except InvalidStatus as e:
        status = e.response.status_code
        error = CallRefused if status in REFUSED_CODES else CallFailed
        raise error(f"HTTP_{status}", f"HTTP {status}") from None
    except (OSError, TimeoutError) as e:
        raise CallFailed("CONNECT_FAILED", str(e) or type(e).__name__) from None


def door_url(url: str, path: str) -> str:
    """The server's URL with the door's path: ws://h:p, ws://h:p/ws or ws://h:p/twilio all work."""
    parts = urlsplit(url)
    if parts.path in ("", "/", "/ws", "/twilio", "/v1/realtime"):
        parts = parts._replace(path=path)
    return urlunsplit(parts)


class Line:
    """One call in progress (see the module docstring)."""

    session_id: str = ""

    def __init__(self) -> None:
        self.played_until = 0.0  # time.monotonic() when the reply audio received so far has played

    def _play(self, seconds: float) -> None:
        now = time.monotonic()
        self.played_until = max(self.played_until, now) + seconds

    async def send(self, frame: Any) -> None:
        raise NotImplementedError

    def events(self) -> AsyncIterator[Heard]:
        raise NotImplementedError

    async def hang_up(self) -> None:
        raise NotImplementedError


class Door:
    """Where callers come in; `frames()` caches each question's encoded frames."""

    name = ""
    rate_hz = 16000

    def __init__(self, url: str, token: str | None):
        self.url, self.token = url, token
        self._frames: dict[str, list[Any]] = {}

    @property
    def frame_samples(self) -> int:
        return self.rate_hz * FRAME_MS // 1000

    def frames(self, question: Question) -> list[Any]:
        """The question (at this door's rate) as ready-to-send 20 ms frames."""
        if question.text not in self._frames:
            pcm = question.audio
            n = self.frame_samples
            pcm = pcm[: len(pcm) // n * n]
            self._frames[question.text] = self._encode([pcm[i:i + n] for i in range(0, len(pcm), n)])
        return self._frames[question.text]

    def silence(self) -> Any:
        import numpy as np

        if "\0silence" not in self._frames:
            self._frames["\0silence"] = self._encode([np.zeros(self.frame_samples, np.int16)])
        return self._frames["\0silence"][0]

    def _encode(self, pcm_frames: list) -> list[Any]:
        raise NotImplementedError

    async def call(self) -> Line:
        raise NotImplementedError


# --- /ws: the binary protocol ----------------------------------------------------------------------


class WsLine(Line):
    def __init__(self, client: VoiceClient):
        super().__init__()
        self.client = client
        self.session_id = client.ready.session_id if client.ready else ""
        self._timestamp = 0
        self._frame_samples = client.opts.input_rate_hz * FRAME_MS // 1000

    async def send(self, frame: bytes) -> None:
        flags = Flags.SEGMENT_START if self._timestamp == 0 else 0
        await self.client.send_frame(MessageType.AUDIO, frame, flags, self._timestamp)
        self._timestamp += self._frame_samples

    async def events(self) -> AsyncIterator[Heard]:
        rate = self.client.opts.output_rate_hz
        try:
            async for item in self.client.messages():
                if isinstance(item, ReceivedAudio):
                    seconds = len(item.samples) / rate
                    self._play(seconds)
                    yield Heard("audio", seconds)
                elif isinstance(item, ServerError):
                    yield Heard("error", data=code_name(item.code))
                elif item.type == "agent_text" and item.final:
                    yield Heard("reply_done", data=item.text)
                elif item.type == "transcript_final":
                    yield Heard("transcript", data=item.text)
                elif item.type == "turn_metrics":
                    yield Heard("stages", data=item.stages_ms)
        except ClientError as e:
            raise CallFailed(code_name(e.code), e.message) from None

    async def hang_up(self) -> None:
        await self.client.close()


class WsDoor(Door):
    """Our protocol at /ws: Opus 16 kHz up, Opus 48 kHz down (what the browser client does)."""

    name = "ws"
    rate_hz = 16000
    output_rate_hz = 48000

    def _encode(self, pcm_frames: list) -> list[bytes]:
        encoder = OpusEncoder(self.rate_hz, frame_ms=FRAME_MS)
        return [encoder.encode(f) for f in pcm_frames]

    async def call(self) -> Line:
        client = VoiceClient(door_url(self.url, "/ws"), ClientOptions(
            input_codec="opus", input_rate_hz=self.rate_hz, output_codec="opus",
            output_rate_hz=self.output_rate_hz, token=self.token))
        try:
            await client.connect(CONNECT_TIMEOUT_S)
        except ClientError as e:
            await client.close()
            if e.code in REFUSED_CODES:
                raise CallRefused(code_name(e.code), e.message) from None
            raise CallFailed(code_name(e.code), e.message) from None
        except (OSError, TimeoutError) as e:
            raise CallFailed("CONNECT_FAILED", str(e) or type(e).__name__) from None
        return WsLine(client)


# --- /twilio: Twilio Media Streams ---------------------------------------------------------------


class TwilioLine(Line):
    """Speaks like Twilio: media out, and marks echoed once the audio before them has played."""

    def __init__(self, ws: ClientConnection, stream_sid: str):
        super().__init__()
        self.ws, self.sid = ws, stream_sid
        self.session_id = stream_sid
        self._chunk = 0
        self._marks: dict[str, asyncio.TimerHandle] = {}

    async def send_event(self, event: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"event": event, "streamSid": self.sid, **fields}, separators=(",", ":")))

    async def send(self, frame: str) -> None:
        self._chunk += 1
        await self.send_event("media", media={"track": "inbound", "chunk": str(self._chunk),
                                              "timestamp": str(self._chunk * FRAME_MS), "payload": frame})

    async def events(self) -> AsyncIterator[Heard]:
        loop = asyncio.get_running_loop()
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                event = data.get("event")
                if event == "media":
                    seconds = len(base64.b64decode(data["media"]["payload"])) / TwilioDoor.rate_hz
                    self._play(seconds)
                    yield Heard("audio", seconds)
                elif event == "mark":
                    name = str(data["mark"]["name"])
                    delay = max(0.0, self.played_until - time.monotonic())
                    self._marks[name] = loop.call_later(delay, self._echo, name)
                elif event == "clear":  # Twilio drops what it buffered and echoes every pending mark
                    self.played_until = time.monotonic()
                    for name, handle in list(self._marks.items()):
                        handle.cancel()
                        self._echo(name)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            reason = (e.rcvd.reason if e.rcvd else "") or "closed"
            if self.played_until == 0.0 and (code == 1013 or (code == 1011 and "refused" in reason)):
                # the bridge could not open its session (server busy) before the call said anything
                raise CallRefused(f"CLOSE_{code}", reason) from None
            if code not in (1000, 1001):
                raise CallFailed(f"CLOSE_{code}", reason) from None

    def _echo(self, name: str) -> None:
        self._marks.pop(name, None)
        task = asyncio.ensure_future(self.send_event("mark", mark={"name": name}))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a closed line is fine

    async def hang_up(self) -> None:
        for handle in self._marks.values():
            handle.cancel()
        with contextlib.suppress(ConnectionClosed):
            await self.send_event("stop", stop={"accountSid": "AC0", "callSid": self.sid})
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(self.ws.close(), 5)


class TwilioDoor(Door):
    """Twilio Media Streams at /twilio: base64 μ-law 8 kHz in 20 ms `media` messages."""

    name = "twilio"
    rate_hz = 8000
    _calls = 0

    def _encode(self, pcm_frames: list) -> list[str]:
        return [base64.b64encode(ulaw_encode(f)).decode("ascii") for f in pcm_frames]

    async def call(self) -> Line:
        TwilioDoor._calls += 1
        sid = f"MZ{TwilioDoor._calls:032d}"
        ws = await open_socket(door_url(self.url, "/twilio"))
        line = TwilioLine(ws, sid)
        params = {"token": self.token} if self.token else {}
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await line.send_event("start", start={
            "accountSid": "AC0", "streamSid": sid, "callSid": f"CA{sid[2:]}", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params})
        return line


# --- /v1/realtime: the OpenAI Realtime API ---------------------------------------------------------


class RealtimeLine(Line):
    """Speaks like an OpenAI Realtime client with server turn detection on (the session's default)."""

    def __init__(self, ws: ClientConnection):
        super().__init__()
        self.ws = ws

    async def send(self, frame: str) -> None:
        await self.ws.send(frame)  # a whole input_audio_buffer.append event, made once per frame

    async def events(self) -> AsyncIterator[Heard]:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                kind = event.get("type")
                if kind in ("response.output_audio.delta", "response.audio.delta"):
                    seconds = len(base64.b64decode(event.get("delta", ""))) / 2 / RealtimeDoor.rate_hz
                    self._play(seconds)
                    yield Heard("audio", seconds)
                elif kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
                    yield Heard("reply_done", data=event.get("transcript"))
                elif kind == "conversation.item.input_audio_transcription.completed":
                    yield Heard("transcript", data=event.get("transcript"))
                elif kind == "session.created":
                    self.session_id = (event.get("session") or {}).get("id", "")
                elif kind == "error":
                    yield Heard("error", data=f"REALTIME_{(event.get('error') or {}).get('code') or 'error'}")
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            reason = (e.rcvd.reason if e.rcvd else "") or "closed"
            if code == 1013 and self.played_until == 0.0:  # the server had no room (before any reply)
                raise CallRefused(f"CLOSE_{code}", reason) from None
            if code not in (1000, 1001):
                raise CallFailed(f"CLOSE_{code}", reason) from None

    async def hang_up(self) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(self.ws.close(), 5)


class RealtimeDoor(Door):
    """The OpenAI Realtime API at /v1/realtime: base64 PCM16 24 kHz in `input_audio_buffer.append`."""

    name = "realtime"
    rate_hz = 24000

    def _encode(self, pcm_frames: list) -> list[str]:
        return [json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(f.astype("<i2").tobytes()).decode("ascii")})
                for f in pcm_frames]

    async def call(self) -> Line:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        url = door_url(self.url, "/v1/realtime") + "?model=voice-agent"
        return RealtimeLine(await open_socket(url, headers=headers, max_size=16 << 20))


DOORS: dict[str, type[Door]] = {"ws": WsDoor, "twilio": TwilioDoor, "realtime": RealtimeDoor}
