"""Frame layer of protocol v1: an 18-byte big-endian header, then the payload.

One WebSocket binary message is one frame. Everything here is a pure function or a small
state machine; the server owns the socket and feeds bytes in. docs/protocol.md is the spec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from voice.protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "HEADER_SIZE",
    "MAX_PING_PAYLOAD_BYTES",
    "PRE_HANDSHAKE_TYPES",
    "PROTOCOL_VERSION",
    "Flags",
    "Frame",
    "FrameReader",
    "MessageType",
    "ProtocolError",
    "decode_frame",
    "decode_header",
    "encode_frame",
    "next_seq",
    "pong_for",
]

PROTOCOL_VERSION = 1

# type u8, flags u8, seq u32, timestamp u64, length u32
_HEADER = struct.Struct(">BBIQI")
HEADER_SIZE = _HEADER.size  # 18
assert HEADER_SIZE == 18

#: Receivers refuse larger payloads (TOO_LARGE). 64 KiB holds 680 ms of 48 kHz PCM16 mono.
DEFAULT_MAX_PAYLOAD_BYTES = 65536
#: Same bound as a WebSocket control frame, so a PING can be echoed without buffering.
MAX_PING_PAYLOAD_BYTES = 125

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


class MessageType(IntEnum):
    """Frame type byte. Receivers must tolerate values not listed here (see Frame.known)."""

    HELLO = 0x01  # client -> server, JSON
    READY = 0x02  # server -> client, JSON
    AUDIO = 0x10  # both ways: one 20 ms Opus packet, or PCM16 little-endian mono
    EVENT = 0x20  # server -> client, JSON
    CONTROL = 0x21  # client -> server, JSON
    ERROR = 0x30  # server -> client: u16 code + UTF-8 message
    PING = 0x31  # either side, opaque payload <= 125 bytes
    PONG = 0x32  # echoes the PING payload
    BYE = 0x3F  # either side: u16 reason code + optional UTF-8 text


#: The only types a client may send before READY; anything else is HANDSHAKE_REQUIRED.
PRE_HANDSHAKE_TYPES: frozenset[MessageType] = frozenset(
    {MessageType.HELLO, MessageType.PING, MessageType.BYE}
)


class Flags(IntFlag):
    """Flag bits. Other bits are reserved: senders set them to 0, receivers ignore them."""

    NONE = 0
    SEGMENT_START = 0x01  # first AUDIO frame of an utterance / of an agent reply
    SEGMENT_END = 0x02  # last AUDIO frame of one


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded or to-be-encoded frame.

    `type` and `flags` stay raw ints so that unknown types and reserved bits survive a
    decode; `timestamp` is in samples of the sender's stream at that direction's rate.
    """

    type: int
    flags: int = 0
    seq: int = 0
    timestamp: int = 0
    payload: bytes = b""

    @property
    def known(self) -> bool:
        """False for a type this version does not define; receivers skip such frames."""
        return self.type in MessageType._value2member_map_

    @property
    def message_type(self) -> MessageType | None:
        """The type as a MessageType, or None when unknown."""
        return MessageType(self.type) if self.known else None

    def has(self, flag: Flags) -> bool:
        """Whether `flag` is set (reserved bits do not matter)."""
        return bool(self.flags & flag)


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: +1, wrapping at 2**32."""
    return (seq + 1) & _U32


def encode_frame(frame: Frame) -> bytes:
    """Header + payload of `frame`. Out-of-range fields are a bug in the caller: ValueError."""
    for name, value, top in (
        ("type", frame.type, 0xFF),
        ("flags", frame.flags, 0xFF),
        ("seq", frame.seq, _U32),
        ("timestamp", frame.timestamp, _U64),
        ("payload length", len(frame.payload), _U32),
    ):
        if not 0 <= value <= top:
            raise ValueError(f"{name} {value} out of range 0..{top}")
    header = _HEADER.pack(frame.type, frame.flags, frame.seq, frame.timestamp, len(frame.payload))
    return header + bytes(frame.payload)


def decode_header(
    data: bytes | bytearray | memoryview, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[int, int, int, int, int]:
    """(type, flags, seq, timestamp, length) from the first 18 bytes of `data`.

    Checks (1) truncated header -> BAD_FRAME and (2) length > max_payload_bytes -> TOO_LARGE,
    in that order, from the header alone: a 4 GB length is refused before any allocation.
    """
    if len(data) < HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    msg_type, flags, seq, timestamp, length = _HEADER.unpack_from(data)
    if length > max_payload_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"payload of {length} bytes exceeds {max_payload_bytes}")
    return msg_type, flags, seq, timestamp, length


def decode_frame(
    data: bytes | bytearray | memoryview, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> Frame:
    """Decode one whole frame (one WebSocket message). The Frame owns a copy of the payload.

    Check order (part of the spec): BAD_FRAME (fewer than 18 bytes), then TOO_LARGE (declared
    length > max_payload_bytes), then LENGTH_MISMATCH (declared length != bytes present), then
    BAD_MESSAGE for a PING over MAX_PING_PAYLOAD_BYTES: a receiver echoes every PING it gets,
    so the bound is enforced here, where no caller can forget it.
    """
    msg_type, flags, seq, timestamp, length = decode_header(data, max_payload_bytes=max_payload_bytes)
    present = len(data) - HEADER_SIZE
    if present != length:
        raise ProtocolError(ErrorCode.LENGTH_MISMATCH, f"header says {length} payload bytes, got {present}")
    _check_ping(msg_type, length)
    return Frame(msg_type, flags, seq, timestamp, bytes(data[HEADER_SIZE:]))


def _check_ping(msg_type: int, length: int) -> None:
    if msg_type == MessageType.PING and length > MAX_PING_PAYLOAD_BYTES:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"PING payload of {length} bytes exceeds {MAX_PING_PAYLOAD_BYTES}"
        )


def pong_for(ping: Frame, *, seq: int, timestamp: int) -> Frame:
    """The PONG answering `ping`, echoing its payload with the responder's own seq/timestamp.

    A PING longer than MAX_PING_PAYLOAD_BYTES is refused (BAD_MESSAGE) rather than echoed.
    """
    _check_ping(ping.type, len(ping.payload))
    return Frame(MessageType.PONG, 0, seq, timestamp, ping.payload)


class FrameReader:
    """Splits a byte stream (TCP, pipe, file) into frames; frames need no other delimiter.

    An oversized frame is refused as soon as its header is in, before its payload is
    buffered. After any error the stream has lost sync, so every later feed raises it again.
    """

    def __init__(self, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self._max_payload_bytes = max_payload_bytes
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Append `data`; return every frame it completed, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER_SIZE:
            try:
                msg_type, flags, seq, timestamp, length = decode_header(
                    self._buffer, max_payload_bytes=self._max_payload_bytes
                )
            except ProtocolError as error:
                self._error = error
                self._buffer.clear()
                raise
            end = HEADER_SIZE + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(msg_type, flags, seq, timestamp, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return frames
