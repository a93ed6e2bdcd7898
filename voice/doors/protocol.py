"""Our binary protocol's door (/ws): one connection = one Session = one call.

The Session owns the connection only: handshake and auth, reading frames, sending frames in order,
the error budget and the goodbye. Everything about turns happens in the call's TurnController
(voice/pipeline/turns.py): the Session maps AUDIO and CONTROL frames to its input, and its output
events and audio frames to EVENT and AUDIO frames. Protocol errors after READY are answered with
ERROR and the session goes on; fatal ones (and every error during the handshake) close the
connection with the error's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice import __version__, metrics
from voice.codecs import BadAudio
from voice.config import Settings
from voice.doors.base import CallDoor
from voice.doors.limits import RateLimiter
from voice.pipeline.audio_in import AudioInput
from voice.pipeline.audio_out import OutFrame
from voice.pipeline.call import open_call
from voice.pipeline.engines import Engines
from voice.pipeline.events import OptionsChanged, PlaybackMark, StopRequest, UserDtmf, UserText
from voice.pipeline.options import CallOptions, OptionsError, resolve_options
from voice.protocol import (
    HEADER_SIZE,
    PRE_HANDSHAKE_TYPES,
    PROTOCOL_VERSION,
    ErrorCode,
    Frame,
    MessageType,
    ProtocolError,
    decode_frame,
    encode_bye,
    encode_error,
    encode_frame,
    next_seq,
)
from voice.protocol import messages as msg

log = logging.getLogger(__name__)

GOING_AWAY = 1001  # WebSocket close code for a server shutdown
NORMAL = 1000
MESSAGE_TOO_BIG = 1009


class MessageTooBig(Exception):
    """A WebSocket message longer than a frame may be (the close says so: 1009, as websockets would)."""


async def reject(conn: ServerConnection, code: ErrorCode, message: str) -> None:
    """Refuse a connection before any session exists: ERROR, then close with the same code."""
    metrics.PROTOCOL_ERRORS.labels(code.name).inc()
    with contextlib.suppress(ConnectionClosed):
        await conn.send(encode_frame(Frame(MessageType.ERROR, payload=encode_error(code, message))))
        await conn.close(code.value, message[:120])


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer …` header, or ""."""
    header = header or ""
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def token_ok(expected: str | None, given: str) -> bool:
    """No token configured, or `given` is it (compared in constant time)."""
    return not expected or hmac.compare_digest(given.encode(), expected.encode())


class Session(CallDoor):
    """One protocol connection; see the module docstring."""

    def __init__(self, conn: ServerConnection, settings: Settings, engines: Engines,
                 auth_header: str | None = None):
        super().__init__()
        self.conn, self.settings, self.engines = conn, settings, engines
        self.auth_header = auth_header
        self.errors = 0
        self.options: CallOptions | None = None
        self.audio_in: AudioInput | None = None
        self._seq_out = 0
        self._send_lock = asyncio.Lock()
        server = settings.server
        self._turns = RateLimiter(server.turn_burst, server.turn_refill_s)
        self._controls = RateLimiter(4 * server.turn_burst, server.turn_refill_s / 4)

    async def run(self) -> None:
        try:
            hello = await self._handshake()
        except ProtocolError as e:
            await self._fail(e)
            return
        if hello is None:  # BYE before HELLO
            await self.conn.close(NORMAL, "bye")
            return
        await self._start(hello)
        await self.serve_call()

    async def close_call(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(MessageType.BYE, encode_bye())
            await self.conn.close(NORMAL, "call ended")

    async def going_away(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(MessageType.BYE, encode_bye(ErrorCode.SHUTTING_DOWN, "server shutting down"))
            await self.conn.close(GOING_AWAY, "server shutting down")

    # ------------------------------------------------------------------ handshake

    async def _handshake(self) -> msg.Hello | None:
        timeout = self.settings.server.handshake_timeout_s
        while True:
            frame = await self._recv(timeout, during_handshake=True)
            if frame is None:
                raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, f"no HELLO within {timeout:g} s")
            if frame.type == MessageType.PING:
                await self._send(MessageType.PONG, frame.payload)
                continue
            if frame.type == MessageType.BYE:
                return None
            if frame.type != MessageType.HELLO:
                raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO")
            return self._check_hello(msg.parse_hello(frame.payload))

    def _check_hello(self, hello: msg.Hello) -> msg.Hello:
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {hello.version} not supported; "
                                f"this server speaks {PROTOCOL_VERSION}")
        if not token_ok(self.settings.server.token, hello.token or bearer_token(self.auth_header)):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "missing or wrong token")
        self.options = self._resolve(hello.options)
        return hello

    def _resolve(self, requested: dict[str, Any]) -> CallOptions:
        try:
            return resolve_options(requested, self.settings, self.options)
        except OptionsError as e:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, str(e)) from None

    async def _start(self, hello: msg.Hello) -> None:
        assert self.options is not None
        self.audio_in = AudioInput(hello.input.codec, hello.input.sample_rate)
        self.call = await open_call(self.settings, self.engines, self.options, session_id=self.id,
                                    output_codec=hello.output.codec, output_rate_hz=hello.output.sample_rate)
        self.options = self.call.options
        ready = msg.Ready(
            session_id=self.id, input=hello.input, output=hello.output,
            limits=msg.Limits(max_payload_bytes=self.settings.server.max_payload_bytes,
                              idle_timeout_s=self.settings.server.idle_timeout_s),
            server=f"voice-agent/{__version__}", options=self.options.as_dict(),
        )
        await self._send(MessageType.READY, msg.encode_ready(ready))
        log.info("session ready", extra={"session": self.id, "client": hello.client,
                                         "input": f"{hello.input.codec}/{hello.input.sample_rate}"})

    # ------------------------------------------------------------------ reading

    async def read_loop(self) -> str:
        """Handle frames until the client leaves; returns how the session ended (a metrics label)."""
        while True:
            try:
                frame = await self._recv(self.settings.server.idle_timeout_s)
                if frame is None:
                    await self._fail(ProtocolError(ErrorCode.IDLE_TIMEOUT, "no frames for "
                                                   f"{self.settings.server.idle_timeout_s:g} s"))
                    return "idle"
                if frame.type == MessageType.BYE:
                    await self.flush_outbox()
                    await self._send(MessageType.BYE, encode_bye())
                    await self.conn.close(NORMAL, "bye")
                    return "bye"
                await self._on_frame(frame)
            except ProtocolError as e:
                if await self._fail(e):
                    return "error"
            except MessageTooBig:
                with contextlib.suppress(ConnectionClosed):
                    await self.conn.close(MESSAGE_TOO_BIG, "message too big")
                return "error"
            except ConnectionClosed:
                return "vanished"

    async def _recv(self, timeout: float, *, during_handshake: bool = False) -> Frame | None:
        """Next frame, None on timeout. Text messages and bad bytes become ProtocolErrors."""
        try:
            data = await asyncio.wait_for(self.conn.recv(), timeout)
        except TimeoutError:
            return None
        if len(data) > self.settings.server.max_payload_bytes + HEADER_SIZE:
            raise MessageTooBig(len(data))  # the server's WebSocket limit is higher, for /v1/realtime
        if isinstance(data, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "text messages are not part of the protocol; send binary frames")
        frame = decode_frame(data, max_payload_bytes=self.settings.server.max_payload_bytes)
        metrics.FRAMES_IN.labels(MessageType(frame.type).name if frame.known else "unknown").inc()
        if during_handshake and frame.known and frame.type not in PRE_HANDSHAKE_TYPES:
            raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, f"{MessageType(frame.type).name} before HELLO")
        return frame

    async def _on_frame(self, frame: Frame) -> None:
        if not frame.known:
            return  # forward compatibility: unknown types are ignored
        kind = MessageType(frame.type)
        if kind == MessageType.AUDIO:
            await self._on_audio(frame.payload)
        elif kind == MessageType.CONTROL:
            await self._on_control(msg.parse_control(frame.payload))
        elif kind == MessageType.PING:
            await self._send(MessageType.PONG, frame.payload)
        elif kind == MessageType.HELLO:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "HELLO was already received")
        # PONG, and server-to-client types sent by a confused client, are ignored

    async def _on_audio(self, payload: bytes) -> None:
        assert self.audio_in is not None and self.call is not None
        try:
            samples = self.audio_in.decode(payload)
        except BadAudio as e:
            raise ProtocolError(ErrorCode.BAD_AUDIO, str(e)) from None
        if len(samples):
            await self.call.feed_audio(samples)

    async def _on_control(self, control: Any) -> None:
        assert self.call is not None and self.audio_in is not None
        if isinstance(control, msg.PlaybackMark):
            self.call.submit(PlaybackMark(control.played_samples))
        elif isinstance(control, msg.TextInput | msg.Dtmf):
            self._limit(self._turns, "typed turns and DTMF")
            if isinstance(control, msg.Dtmf):
                self.call.submit(UserDtmf(control.digits))
            elif control.text.strip():
                self.call.submit(UserText(control.text.strip()))
        elif isinstance(control, msg.EndOfInput):
            tail = self.audio_in.flush()
            if len(tail):
                await self.call.feed_audio(tail)
            await self.call.end_of_input()
        elif isinstance(control, msg.ConfigUpdate):
            self._limit(self._controls, "config updates")
            self.options = self._resolve(control.options)
            self.call.submit(OptionsChanged(self.options))
        elif isinstance(control, msg.Interrupt):
            self._limit(self._controls, "interrupts")
            self.call.submit(StopRequest("client"))

    def _limit(self, limiter: RateLimiter, what: str) -> None:
        if not limiter.allow():
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"too many {what}; slow down")

    # ------------------------------------------------------------------ writing

    async def write(self, item: Any) -> None:
        """One output of the call: AUDIO for frames, EVENT for records the protocol shows."""
        if isinstance(item, OutFrame):
            await self._send(MessageType.AUDIO, item.payload, int(item.flags), item.timestamp_samples)
            return
        model = msg.EVENT_MODELS.get(item.type)
        if model is None:
            return  # internal only (early transcripts)
        event = model(**dataclasses.asdict(item), t_ms=self.t_ms())
        await self._send(MessageType.EVENT, msg.encode_event(event))

    async def _send(self, kind: MessageType, payload: bytes, flags: int = 0, timestamp: int = 0) -> None:
        async with self._send_lock:  # seq numbers must follow send order
            frame = Frame(kind, flags, self._seq_out, timestamp, payload)
            self._seq_out = next_seq(self._seq_out)
            await self.conn.send(encode_frame(frame))
        metrics.FRAMES_OUT.labels(kind.name).inc()

    # ------------------------------------------------------------------ errors

    async def _fail(self, error: ProtocolError) -> bool:
        """Send ERROR; close when fatal or over budget. Returns True when the session is over."""
        self.errors += 1
        code = error.code
        fatal = error.fatal or self.call is None
        if not fatal and self.errors > self.settings.server.max_errors:
            code, fatal = ErrorCode.TOO_MANY_ERRORS, True
        metrics.PROTOCOL_ERRORS.labels(code.name).inc()
        log.info("protocol error", extra={"session": self.id, "code": code.name, "detail": error.message})
        try:
            await self._send(MessageType.ERROR, encode_error(code, error.message))
            if fatal:
                await self.conn.close(code.value, error.message[:120])
        except ConnectionClosed:
            return True
        return fatal
