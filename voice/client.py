"""A protocol client: connect + HELLO/READY, send audio and controls, receive events and audio.

Used by `voice mic`, the tests and benchmarks, and later by the SIP gateway (which is a client of
the server too). Audio goes out as 20 ms frames, Opus-encoded unless the session asked for pcm16.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from voice import __version__
from voice.codecs.opus import OpusDecoder, OpusEncoder
from voice.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Flags,
    Frame,
    MessageType,
    ProtocolError,
    decode_bye,
    decode_error,
    decode_frame,
    encode_bye,
    encode_frame,
    next_seq,
)
from voice.protocol import messages as msg

FRAME_MS = 20


class ClientError(Exception):
    """The server refused or ended the session; `code` is an ErrorCode value or a close code."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{_code_name(code)}: {message}")
        self.code = code
        self.message = message


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


@dataclass
class ReceivedAudio:
    """One AUDIO frame from the server, decoded to int16 at the output rate."""

    samples: np.ndarray
    timestamp: int
    flags: int


@dataclass
class ServerError:
    """A non-fatal ERROR frame: the session goes on."""

    code: int
    message: str


@dataclass
class ClientOptions:
    input_codec: str = "opus"
    input_rate_hz: int = 48000
    output_codec: str = "opus"
    output_rate_hz: int = 48000
    options: dict[str, Any] = field(default_factory=dict)
    token: str | None = None


class VoiceClient:
    """One session with a voice server. Not thread-safe; use from one event loop."""

    def __init__(self, url: str, opts: ClientOptions | None = None):
        self.url = url
        self.opts = opts or ClientOptions()
        self.ready: msg.Ready | None = None
        self._ws: ClientConnection | None = None
        self._seq = 0
        self._samples_sent = 0
        self._frame_samples = self.opts.input_rate_hz * FRAME_MS // 1000
        self._pending = np.zeros(0, np.int16)
        self._encoder = (OpusEncoder(self.opts.input_rate_hz, frame_ms=FRAME_MS)
                         if self.opts.input_codec == "opus" else None)
        self._decoder = OpusDecoder(self.opts.output_rate_hz) if self.opts.output_codec == "opus" else None

    async def connect(self, timeout_s: float = 15.0) -> msg.Ready:
        """Open the WebSocket and do the handshake; raises ClientError, OSError or TimeoutError.

        A refusal is a ClientError with the server's code (SERVER_BUSY, AUTH_FAILED...), also when
        the server refused before our HELLO went out: its ERROR frame is still read, else the
        close code (4xxx) is the code.
        """
        headers = {"Authorization": f"Bearer {self.opts.token}"} if self.opts.token else None
        try:
            self._ws = await connect(self.url, additional_headers=headers, compression=None,
                                     open_timeout=timeout_s, max_size=1 << 20)
        except InvalidStatus as e:
            raise ClientError(e.response.status_code, f"HTTP {e.response.status_code} from {self.url}") from None
        except InvalidURI as e:
            raise ClientError(0, f"bad URL {self.url}: {e}") from None
        try:
            self.ready = await asyncio.wait_for(self._handshake(), timeout_s)
        except BaseException:
            await self._abort()
            raise
        return self.ready

    async def _handshake(self) -> msg.Ready:
        hello = msg.Hello(
            version=PROTOCOL_VERSION, token=self.opts.token,
            input=msg.InputFormat(codec=self.opts.input_codec, sample_rate=self.opts.input_rate_hz),
            output=msg.OutputFormat(codec=self.opts.output_codec, sample_rate=self.opts.output_rate_hz),
            options=self.opts.options, client=f"voice-cli/{__version__}",
        )
        with contextlib.suppress(ConnectionClosed):  # refused already: the ERROR waits in the queue
            await self.send_frame(MessageType.HELLO, msg.encode_hello(hello))
        try:
            frame = await self._recv_frame()
            if frame.type == MessageType.ERROR:
                code, text = decode_error(frame.payload)
                raise ClientError(code, text)
            if frame.type != MessageType.READY:
                raise ClientError(ErrorCode.BAD_MESSAGE, f"expected READY, got type {frame.type:#x}")
            return msg.parse_ready(frame.payload)
        except ConnectionClosed as e:
            raise _closed_during_handshake(e) from None
        except ProtocolError as e:
            raise ClientError(e.code, f"bad frame from the server: {e.message}") from None

    async def _abort(self) -> None:
        """Close after a failed handshake without waiting long on a server that is gone."""
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                await asyncio.wait_for(self._ws.close(), 2)

    async def send_frame(self, kind: int, payload: bytes = b"", flags: int = 0, timestamp: int = 0) -> None:
        assert self._ws is not None, "not connected"
        frame = Frame(kind, flags, self._seq, timestamp, payload)
        self._seq = next_seq(self._seq)
        await self._ws.send(encode_frame(frame))

    async def send_audio(self, pcm: np.ndarray) -> int:
        """Queue int16 samples at the input rate; sends every complete 20 ms frame. Returns frames sent."""
        self._pending = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        sent = 0
        while len(self._pending) >= self._frame_samples:
            chunk, self._pending = self._pending[: self._frame_samples], self._pending[self._frame_samples:]
            await self._send_chunk(chunk)
            sent += 1
        return sent

    async def _send_chunk(self, chunk: np.ndarray) -> None:
        payload = self._encoder.encode(chunk) if self._encoder else chunk.astype("<i2").tobytes()
        flags = Flags.SEGMENT_START if self._samples_sent == 0 else 0
        await self.send_frame(MessageType.AUDIO, payload, flags, self._samples_sent)
        self._samples_sent += len(chunk)

    async def flush_audio(self) -> None:
        """Pad the last partial frame with silence and send it."""
        if len(self._pending):
            pad = np.zeros(self._frame_samples - len(self._pending), np.int16)
            self._pending = np.concatenate([self._pending, pad])
            await self.send_audio(np.zeros(0, np.int16))

    async def send_control(self, control: Any) -> None:
        await self.send_frame(MessageType.CONTROL, msg.encode_control(control))

    async def end_input(self) -> None:
        await self.flush_audio()
        await self.send_control(msg.EndOfInput())

    async def messages(self) -> AsyncIterator[Any]:
        """Yields typed events, ReceivedAudio and ServerError until the session ends.

        A fatal ERROR or an abnormal close raises ClientError; a BYE or normal close just stops.
        So does a frame from the server that cannot be read (ClientError with its code): a caller
        handles one exception type, whatever the server sent.
        """
        while True:
            try:
                frame = await self._recv_frame()
                item = self._interpret(frame)
            except ConnectionClosed as e:
                if e.rcvd is not None and e.rcvd.code not in (1000, 1001):
                    raise ClientError(e.rcvd.code, e.rcvd.reason or "connection closed") from None
                return
            except ProtocolError as e:
                raise ClientError(e.code, f"bad frame from the server: {e.message}") from None
            except ValueError as e:  # BadAudio, or PCM16 of an odd length
                raise ClientError(ErrorCode.BAD_AUDIO, f"bad audio from the server: {e}") from None
            if item is _BYE:
                return
            if item is not None:
                yield item

    def _interpret(self, frame: Frame) -> Any:
        if frame.type == MessageType.EVENT:
            return msg.parse_event(frame.payload)
        if frame.type == MessageType.AUDIO:
            if self._decoder is not None:
                samples = self._decoder.decode(frame.payload)
            else:
                samples = np.frombuffer(frame.payload, "<i2").astype(np.int16)
            return ReceivedAudio(samples, frame.timestamp, frame.flags)
        if frame.type == MessageType.ERROR:
            code, text = decode_error(frame.payload)
            return ServerError(code, text)
        if frame.type == MessageType.BYE:
            code, text = decode_bye(frame.payload)
            if code == ErrorCode.SHUTTING_DOWN:
                return ServerError(code, text or "server shutting down")
            return _BYE
        return None  # PONG, unknown types

    async def _recv_frame(self) -> Frame:
        assert self._ws is not None, "not connected"
        data = await self._ws.recv()
        if isinstance(data, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "server sent a text message")
        return decode_frame(data, max_payload_bytes=1 << 20)

    async def close(self) -> None:
        if self._ws is None:
            return
        try:
            await self.send_frame(MessageType.BYE, encode_bye())
            await asyncio.wait_for(self._ws.close(), 5)
        except (ConnectionClosed, TimeoutError, OSError):
            pass


def _closed_during_handshake(e: ConnectionClosed) -> ClientError:
    """The server closed before READY without a readable ERROR: its close code says why."""
    if e.rcvd is None:
        return ClientError(1006, "connection lost during the handshake")
    return ClientError(e.rcvd.code, e.rcvd.reason or "connection closed during the handshake")


_BYE = object()
