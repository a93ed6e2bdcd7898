"""Error codes of protocol v1, which of them end a session, and the ERROR / BYE payloads.

One number per failure, used twice: in the ERROR frame's payload and, when the error is
fatal, as the WebSocket close code. That is why the codes live in the 4000-4999 range,
which RFC 6455 reserves for applications.
"""

from __future__ import annotations

import struct
from enum import IntEnum

_CODE = struct.Struct(">H")

#: BYE reason code for an ordinary goodbye (not an error).
BYE_NORMAL = 0


class ErrorCode(IntEnum):
    """u16 carried by ERROR and BYE payloads; also the WebSocket close code when fatal."""

    BAD_FRAME = 4000
    LENGTH_MISMATCH = 4001
    TOO_LARGE = 4002
    BAD_JSON = 4003
    BAD_MESSAGE = 4004
    UNSUPPORTED_VERSION = 4005
    HANDSHAKE_REQUIRED = 4006
    AUTH_FAILED = 4007
    UNSUPPORTED_CODEC = 4008
    BAD_AUDIO = 4009
    SERVER_BUSY = 4010
    IDLE_TIMEOUT = 4011
    SHUTTING_DOWN = 4012
    INTERNAL = 4013
    TOO_MANY_ERRORS = 4014
    RATE_LIMITED = 4015


#: Codes after which the server closes the connection even once the session is running.
FATAL_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.HANDSHAKE_REQUIRED,
        ErrorCode.AUTH_FAILED,
        ErrorCode.UNSUPPORTED_CODEC,
        ErrorCode.SERVER_BUSY,
        ErrorCode.IDLE_TIMEOUT,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.TOO_MANY_ERRORS,
    }
)


class ProtocolError(Exception):
    """A peer broke the protocol; `code` says how, and is what goes into the ERROR frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        """Whether this error ends a running session (see `is_fatal`)."""
        return is_fatal(self.code)


def is_fatal(code: int, *, during_handshake: bool = False) -> bool:
    """True when the server must close the connection after sending ERROR `code`.

    Every error before READY is fatal: there is no session yet to keep running. A code
    this version does not know is treated as fatal, the safe reading of a newer peer.
    """
    if during_handshake:
        return True
    try:
        return ErrorCode(code) in FATAL_CODES
    except ValueError:
        return True


def _encode_code_text(code: int, text: str) -> bytes:
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"code {code} does not fit in u16")
    return _CODE.pack(code) + text.encode("utf-8")


def _decode_code_text(payload: bytes | bytearray | memoryview, what: str) -> tuple[int, str]:
    if len(payload) < _CODE.size:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} payload shorter than 2 bytes")
    (code,) = _CODE.unpack_from(payload)
    if code in ErrorCode._value2member_map_:
        code = ErrorCode(code)  # else a newer peer's code: keep the number, do not choke on it
    # The text is for humans and logs: a broken byte must not hide the code in front of it.
    return code, bytes(payload[_CODE.size :]).decode("utf-8", errors="replace")


def encode_error(code: int, message: str = "") -> bytes:
    """ERROR payload: u16 code (big-endian) then the message as UTF-8 (may be empty)."""
    return _encode_code_text(code, message)


def decode_error(payload: bytes | bytearray | memoryview) -> tuple[int, str]:
    """(code, message) of an ERROR payload; code is an `ErrorCode` when known, else the raw int.

    Raises ProtocolError(BAD_MESSAGE) when the payload cannot hold a code. Invalid UTF-8 in
    the message is replaced (U+FFFD), not refused.
    """
    return _decode_code_text(payload, "ERROR")


def encode_bye(code: int = BYE_NORMAL, reason: str = "") -> bytes:
    """BYE payload: u16 reason code (`BYE_NORMAL` or an ErrorCode) then optional UTF-8 text."""
    return _encode_code_text(code, reason)


def decode_bye(payload: bytes | bytearray | memoryview) -> tuple[int, str]:
    """(code, reason) of a BYE payload; same layout and leniency as `decode_error`."""
    return _decode_code_text(payload, "BYE")
