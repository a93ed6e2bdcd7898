"""Twilio Media Streams on the voice server: WebSocket /twilio, JSON text frames, μ-law 8 kHz.

Twilio (and Telnyx, which copies it) sends `connected`, `start` (streamSid, callSid,
customParameters, mediaFormat audio/x-mulaw 8000 mono), `media` (base64 μ-law, 20 ms), `dtmf`,
`mark` (echoed when the audio queued before our mark has played, or was cleared) and `stop`.
We send `media` with the agent's audio, a `mark` after every agent segment and every
`mark_every_ms` inside one, and `clear` when the agent is interrupted, so the phone stops at once.

The endpoint is a bridge, like the SIP gateway: each stream opens a loopback protocol session to
the same server's /ws, so the Session logic (turns, barge-in, marks, auth) is reused unchanged.
The token comes from `customParameters.token` (Twilio cannot set headers on the stream) or the
upgrade request's Authorization header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice.client import ClientError, ClientOptions, ReceivedAudio, VoiceClient
from voice.codecs.g711 import ulaw_decode, ulaw_encode
from voice.protocol import Flags
from voice.protocol import messages as msg

log = logging.getLogger(__name__)

TWILIO_PATH = "/twilio"
RATE_HZ = 8000
#: Session events logged per stream (Twilio has no channel for them): what was heard and said.
LOGGED_EVENTS = frozenset({"transcript_final", "agent_text", "interrupted"})


@dataclass
class TwilioSettings:
    start_timeout_s: float = 10.0   # connected/start must arrive this soon
    mark_every_ms: int = 500         # playback-position granularity inside a long reply
    max_bad_messages: int = 20       # then the stream is closed (1008 policy violation)


class MarkLedger:
    """Which of our marks stand for which position in the server's output stream."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self._next = 0
        self.played_samples = 0

    def new(self, position: int) -> str:
        name = f"voice-{self._next}"
        self._next += 1
        self._pending[name] = position
        return name

    def played(self, name: str) -> int | None:
        """Twilio echoed `name`: the new played position, or None for a cleared/unknown mark."""
        position = self._pending.pop(name, None)
        if position is None:
            return None
        self.played_samples = max(self.played_samples, position)
        return self.played_samples

    def clear(self) -> None:
        """After `clear` Twilio echoes every pending mark although that audio never played."""
        self._pending.clear()


class TwilioStream:
    """One Media Streams connection bridged to one protocol session."""

    def __init__(self, conn: ServerConnection, server_url: str, settings: TwilioSettings | None = None):
        self.conn = conn
        self.server_url = server_url
        self.settings = settings or TwilioSettings()
        self.stream_sid = ""
        self.marks = MarkLedger()
        self.client: VoiceClient | None = None
        self._bad = 0
        self._since_mark_samples = 0

    async def run(self) -> None:
        # one reader of the connection for the whole call, shared by the start wait and the bridge
        self._inbox = self._events()
        try:
            start = await asyncio.wait_for(self._wait_for_start(), self.settings.start_timeout_s)
        except TimeoutError:
            start = None
        if start is None:
            await self._close(1008, "expected connected and start messages")
            return
        self.client = self._client_for(start)
        try:
            await self.client.connect()
        except (ClientError, OSError, TimeoutError) as e:
            log.warning("twilio: voice session refused", extra={"error": str(e), "stream": self.stream_sid})
            code = 1008 if isinstance(e, ClientError) and e.code in (4007, 401, 403) else 1011
            await self._close(code, "voice session refused")
            return
        log.info("twilio stream started", extra={"stream": self.stream_sid, "call": start.get("callSid")})
        to_server = asyncio.create_task(self._from_twilio(), name="twilio-in")
        to_twilio = asyncio.create_task(self._from_server(), name="twilio-out")
        try:
            await asyncio.wait({to_server, to_twilio}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_server, to_twilio):
                task.cancel()
            await asyncio.gather(to_server, to_twilio, return_exceptions=True)
            await self.client.close()
            await self._close(1000, "stream ended")

    def _client_for(self, start: dict[str, Any]) -> VoiceClient:
        params = start.get("customParameters") or {}
        header = self.conn.request.headers.get("Authorization", "") if self.conn.request else ""
        token = params.get("token") or (header[7:] if header.lower().startswith("bearer ") else None)
        options: dict[str, Any] = {"barge_in": {"echo": "raise"},  # a phone: no echo cancellation on our side
                                   "call": {"call_sid": start.get("callSid"), "stream_sid": self.stream_sid}}
        if params.get("agent"):
            options["agent"] = params["agent"]
        return VoiceClient(self.server_url, ClientOptions(
            input_codec="pcm16", input_rate_hz=RATE_HZ, output_codec="pcm16", output_rate_hz=RATE_HZ,
            options=options, token=token))

    async def _wait_for_start(self) -> dict[str, Any] | None:
        async for event, data in self._inbox:
            if event == "start":
                self.stream_sid = data.get("streamSid") or data.get("start", {}).get("streamSid", "")
                return data.get("start") or {}
        return None  # closed, or too many malformed messages

    async def _events(self):
        """(event name, message) for each well-formed JSON text frame; None after too many bad ones."""
        async for raw in self.conn:
            try:
                data = json.loads(raw)
                event = data["event"] if isinstance(data, dict) else None
                if not isinstance(event, str):
                    raise ValueError("no event")
            except (ValueError, KeyError, TypeError):
                self._bad += 1
                log.info("twilio: ignoring a malformed message", extra={"stream": self.stream_sid})
                if self._bad > self.settings.max_bad_messages:
                    return
                continue
            yield event, data

    # ------------------------------------------------------------------ Twilio -> server

    async def _from_twilio(self) -> None:
        assert self.client is not None
        async for event, data in self._inbox:
            if event == "media":
                media = data.get("media") or {}
                if media.get("track", "inbound") not in ("inbound", "inbound_track"):
                    continue
                try:
                    pcm = ulaw_decode(base64.b64decode(media.get("payload", ""), validate=True))
                except (binascii.Error, ValueError):
                    self._bad += 1
                    continue
                await self.client.send_audio(pcm)
            elif event == "dtmf":
                digit = str((data.get("dtmf") or {}).get("digit", ""))
                with contextlib.suppress(ValueError):  # pydantic rejects anything but 0-9*#A-D
                    await self.client.send_control(msg.Dtmf(digits=digit))
            elif event == "mark":
                played = self.marks.played(str((data.get("mark") or {}).get("name", "")))
                if played is not None:
                    await self.client.send_control(msg.PlaybackMark(played_samples=played))
            elif event == "stop":
                return

    # ------------------------------------------------------------------ server -> Twilio

    async def _from_server(self) -> None:
        assert self.client is not None
        try:
            async for item in self.client.messages():
                if isinstance(item, ReceivedAudio):
                    await self._send_media(item)
                    continue
                kind = getattr(item, "type", None)
                if kind in LOGGED_EVENTS and (kind != "agent_text" or item.final):
                    log.info("twilio call event", extra={"stream": self.stream_sid, "event": kind,
                                                         "text": getattr(item, "text", "")})
                if kind == "interrupted":
                    self.marks.clear()
                    self._since_mark_samples = 0
                    await self._send({"event": "clear", "streamSid": self.stream_sid})
        except ClientError as e:
            log.warning("twilio: voice session ended with an error", extra={"error": str(e)})

    async def _send_media(self, audio: ReceivedAudio) -> None:
        payload = base64.b64encode(ulaw_encode(audio.samples)).decode("ascii")
        await self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
        self._since_mark_samples += len(audio.samples)
        end = audio.timestamp + len(audio.samples)
        every = self.settings.mark_every_ms * RATE_HZ // 1000
        if audio.flags & Flags.SEGMENT_END or self._since_mark_samples >= every:
            self._since_mark_samples = 0
            await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": self.marks.new(end)}})

    async def _send(self, message: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(message, separators=(",", ":")))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.conn.close(code, reason)


async def serve_twilio(conn: ServerConnection, server_url: str) -> None:
    """The /twilio WebSocket handler: bridge this stream to a session at `server_url`."""
    try:
        await TwilioStream(conn, server_url).run()
    except ConnectionClosed:
        pass
    except Exception:  # one broken stream must never take the server down
        log.exception("twilio stream crashed")
