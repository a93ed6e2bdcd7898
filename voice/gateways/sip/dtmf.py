"""DTMF as RFC 4733 telephone events (the successor of RFC 2833), and SIP INFO dtmf-relay bodies.

An event packet carries the event code, an end bit, the volume and the duration so far; the
sender repeats it while the key is held and sends the end packet three times. Every packet of
one key press has the same RTP timestamp, so a receiver reports a digit once per timestamp: on
its first packet, which is both the earliest moment and robust to lost end packets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voice.gateways.sip.message import ascii_int

DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


class DtmfError(ValueError):
    """Not a telephone-event payload."""


@dataclass(frozen=True)
class DtmfEvent:
    digit: str
    end: bool
    volume_dbm0: int      # attenuation below 0 dBm0, 0..63
    duration_samples: int


def parse_event(payload: bytes) -> DtmfEvent:
    """4-byte RFC 4733 payload -> DtmfEvent. Events other than 0-15 (flash, tones) raise DtmfError."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event payload of {len(payload)} bytes, need 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    if event >= len(DIGITS):
        raise DtmfError(f"event {event} is not a DTMF digit")
    return DtmfEvent(DIGITS[event], bool(flags & 0x80), flags & 0x3F, duration)


def build_event(digit: str, *, end: bool, duration_samples: int, volume_dbm0: int = 10) -> bytes:
    if digit not in DIGITS or len(digit) != 1:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    flags = (0x80 if end else 0) | (volume_dbm0 & 0x3F)
    return _EVENT.pack(DIGITS.index(digit), flags, min(duration_samples, 0xFFFF))


def key_press_payloads(digit: str, *, duration_ms: int = 100, packet_ms: int = 20,
                       clock_hz: int = 8000) -> list[tuple[bytes, bool]]:
    """(payload, marker) of every packet of one key press: updates every packet_ms, then the end
    packet three times (RFC 4733 §2.5.1.4), all to be sent with one RTP timestamp."""
    step = clock_hz * packet_ms // 1000
    total = clock_hz * duration_ms // 1000
    packets = [(build_event(digit, end=False, duration_samples=d), d == step) for d in range(step, total, step)]
    packets += [(build_event(digit, end=True, duration_samples=total), not packets and i == 0) for i in range(3)]
    return packets


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, one per key press."""

    def __init__(self) -> None:
        self._last_timestamp: int | None = None
        self.digits = ""

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        """The digit when this packet starts a new key press, else None (repeats, ends, junk)."""
        try:
            event = parse_event(payload)
        except DtmfError:
            return None
        if timestamp == self._last_timestamp:
            return None
        self._last_timestamp = timestamp
        self.digits += event.digit
        return event.digit


def parse_info_body(content_type: str, body: bytes) -> str | None:
    """The digit of a SIP INFO `application/dtmf-relay` (Signal=5) or `application/dtmf` body."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif ctype != "application/dtmf":
        return None
    code = ascii_int(text, 2)
    if code is not None and code < len(DIGITS):  # numeric event code form
        return DIGITS[code]
    return text.upper() if len(text) == 1 and text.upper() in DIGITS else None
