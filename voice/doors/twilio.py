"""Twilio Media Streams' door (/twilio): JSON text frames, base64 μ-law 8 kHz, one stream = one call.

Twilio (and Telnyx, which copies it) sends `connected`, `start` (streamSid, callSid,
customParameters, mediaFormat audio/x-mulaw 8000 mono), `media` (20 ms), `dtmf`, `mark` (echoed when
the audio queued before our mark has played, or was cleared) and `stop`; the messages are parsed by
voice/gateways/twilio_messages.py. We send `media` with the agent's audio, a `mark` after every agent
segment and every `mark_every_ms` inside one, and `clear` when the agent is interrupted, so the phone
stops at once. When the agent ends the call we close the stream (with <Connect><Stream>, Twilio then
goes on to the next TwiML verb: put <Hangup/> there).

The stream drives its call's turn controller in process, like the /ws door: no loopback session.
The token comes from `customParameters.token` (Twilio cannot set headers on the stream) or the
upgrade request's Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from voice.codecs.g711 import ulaw_decode, ulaw_encode
from voice.codecs.pcm import float32_to_int16
from voice.config import Settings
from voice.doors.base import CallDoor
from voice.doors.limits import RateLimiter
from voice.doors.protocol import bearer_token, token_ok
from voice.gateways import twilio_messages as tw
from voice.pipeline.audio_in import AudioInput
from voice.pipeline.audio_out import OutFrame
from voice.pipeline.call import open_call
from voice.pipeline.engines import Engines
from voice.pipeline.events import PlaybackMark, UserDtmf
from voice.pipeline.options import OptionsError, resolve_options
from voice.protocol import Flags

log = logging.getLogger(__name__)

TWILIO_PATH = "/twilio"
RATE_HZ = 8000
FRAME_SAMPLES = 160  # Twilio's 20 ms media frame
POLICY_VIOLATION = 1008
#: Call events logged per stream (Twilio has no channel for them): what was heard and said.
LOGGED_EVENTS = frozenset({"transcript_final", "agent_text", "interrupted", "end_of_turn", "backchannel",
                           "call_ending"})


@dataclass
class TwilioSettings:
    start_timeout_s: float = 10.0   # connected/start must arrive this soon
    mark_every_ms: int = 500         # playback-position granularity inside a long reply
    max_bad_messages: int = 20       # then the stream is closed (1008 policy violation)
    #: Twilio sends a `media` message every 20 ms for the whole call, silence included. When none
    #: comes for this long (lost packets, a stalled or simulated caller that sends only its words),
    #: the gap is heard as silence, so the turn still ends instead of waiting for audio forever.
    fill_gap_after_ms: int = 400


class MarkLedger:
    """Which of our marks stand for which position in the call's output stream."""

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


class StreamRefused(Exception):
    """The stream cannot become a call; `code` is the WebSocket close code."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class TwilioStream(CallDoor):
    """One Media Streams connection = one call."""

    def __init__(self, conn: ServerConnection, settings: Settings, engines: Engines,
                 twilio: TwilioSettings | None = None):
        super().__init__()
        self.conn, self.settings, self.engines = conn, settings, engines
        self.twilio = twilio or TwilioSettings()
        self.stream_sid = ""
        self.marks = MarkLedger()
        self.audio_in = AudioInput("pcm16", RATE_HZ)
        self._bad = 0
        self._since_mark_samples = 0
        self._keys = RateLimiter(4 * settings.server.turn_burst, settings.server.turn_refill_s / 4)
        self._line_at = 0.0  # (event-loop clock) the call has heard the line up to here: media or filled gaps

    async def run(self) -> None:
        self._inbox = self._messages()  # one reader of the connection for the whole call
        try:
            start = await self._wait_for_start()
            await self._open(start)
        except StreamRefused as e:
            log.info("twilio stream refused", extra={"stream": self.stream_sid, "reason": e.reason})
            await self._close(e.code, e.reason)
            return
        log.info("twilio stream started", extra={"stream": self.stream_sid, "call": start.start.callSid,
                                                 "session": self.id})
        outcome = await self.serve_call()
        if outcome != "ended":
            await self._close(1000, "stream ended")

    async def _wait_for_start(self) -> tw.Start:
        try:
            async with asyncio.timeout(self.twilio.start_timeout_s):
                async for message in self._inbox:
                    if isinstance(message, tw.Start):
                        self.stream_sid = message.stream_sid
                        return message
        except TimeoutError:
            pass
        raise StreamRefused(POLICY_VIOLATION, "expected connected and start messages")

    async def _open(self, start: tw.Start) -> None:
        if not start.start.mediaFormat.is_mulaw_8k_mono:
            raise StreamRefused(POLICY_VIOLATION, "only audio/x-mulaw 8000 Hz mono is supported")
        params = start.start.customParameters
        headers = self.conn.request.headers if self.conn.request else {}
        if not token_ok(self.settings.server.token, params.get("token") or bearer_token(headers.get("Authorization"))):
            raise StreamRefused(POLICY_VIOLATION, "missing or wrong token")
        requested: dict[str, Any] = {"barge_in": {"echo": "raise"},  # a phone: no echo cancellation here
                                     "call_sid": start.start.callSid, "stream_sid": self.stream_sid}
        if params.get("agent"):
            requested["agent"] = params["agent"]
        try:
            options = resolve_options(requested, self.settings)
        except OptionsError as e:
            raise StreamRefused(POLICY_VIOLATION, str(e)) from None
        self.call = await open_call(self.settings, self.engines, options, session_id=self.id,
                                    output_codec="pcm16", output_rate_hz=RATE_HZ)

    async def _messages(self):
        """Each well-formed message, or None when none came for `fill_gap_after_ms` (the timeout only
        runs while the reader waits here, so frames queued behind a busy VAD never look missing).
        Malformed messages are logged and counted, too many end the stream."""
        quiet_s = self.twilio.fill_gap_after_ms / 1000
        while True:
            try:
                async with asyncio.timeout(quiet_s):
                    raw = await self.conn.recv()  # cancelling recv loses nothing (websockets)
            except TimeoutError:
                yield None
                continue
            except ConnectionClosedOK:
                return
            try:
                yield tw.parse_twilio(raw)
            except tw.TwilioMessageError as e:
                if self.call is None and str(e).startswith("start "):
                    raise StreamRefused(POLICY_VIOLATION, f"malformed start: {e}") from None
                self._bad += 1
                log.info("twilio: ignoring a malformed message", extra={"stream": self.stream_sid, "error": str(e)})
                if self._bad > self.twilio.max_bad_messages:
                    raise StreamRefused(POLICY_VIOLATION, "too many malformed messages") from None

    # ------------------------------------------------------------------ Twilio -> the call

    async def read_loop(self) -> str:
        assert self.call is not None
        loop = asyncio.get_running_loop()
        self._line_at = loop.time()
        try:
            async for message in self._inbox:
                if message is None:
                    await self._hear_gap(loop.time())
                elif isinstance(message, tw.Media) and message.inbound:
                    self._line_at = max(self._line_at, loop.time())
                    await self.call.feed_audio(self.audio_in.decode(ulaw_decode(message.media.payload).tobytes()))
                elif isinstance(message, tw.Dtmf) and self._keys.allow():
                    self.call.submit(UserDtmf(message.dtmf.digit.upper()))
                elif isinstance(message, tw.Mark):
                    if (played := self.marks.played(message.mark.name)) is not None:
                        self.call.submit(PlaybackMark(played))
                elif isinstance(message, tw.Stop):
                    return "bye"
        except StreamRefused as e:
            await self._close(e.code, e.reason)
            return "error"
        except ConnectionClosed:
            pass
        return "vanished"

    async def _hear_gap(self, now: float) -> None:
        """The time since the line was last heard, as silence (Twilio would have sent it)."""
        assert self.call is not None
        frames = int((now - self._line_at) * RATE_HZ / FRAME_SAMPLES)
        if frames > 0:
            self._line_at += frames * FRAME_SAMPLES / RATE_HZ
            await self.call.feed_audio(self.audio_in.decode(bytes(2 * FRAME_SAMPLES * frames)))

    # ------------------------------------------------------------------ the call -> Twilio

    async def write(self, item: Any) -> None:
        if isinstance(item, OutFrame):
            await self._send_media(item)
            return
        kind = item.type
        if kind in LOGGED_EVENTS and (kind != "agent_text" or item.final):
            log.info("twilio call event", extra={"stream": self.stream_sid, "event": kind,
                                                 "text": getattr(item, "text", getattr(item, "reason", ""))})
        if kind == "interrupted":
            self.marks.clear()
            self._since_mark_samples = 0
            await self._send(tw.clear_message(self.stream_sid))

    async def _send_media(self, frame: OutFrame) -> None:
        assert frame.pcm is not None
        await self._send(tw.media_message(self.stream_sid, ulaw_encode(float32_to_int16(frame.pcm))))
        self._since_mark_samples += frame.samples
        every = self.twilio.mark_every_ms * RATE_HZ // 1000
        if frame.flags & Flags.SEGMENT_END or self._since_mark_samples >= every:
            self._since_mark_samples = 0
            end = frame.timestamp_samples + frame.samples
            await self._send(tw.mark_message(self.stream_sid, self.marks.new(end)))

    async def close_call(self) -> None:
        await self._close(1000, "call ended")

    async def going_away(self) -> None:
        await self._close(1001, "server shutting down")

    async def _send(self, text: str) -> None:
        await self.conn.send(text)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.conn.close(code, reason)
