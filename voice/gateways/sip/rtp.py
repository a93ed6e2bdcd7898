"""RTP packets (RFC 3550 §5.1) and the sending side's counters. Pure, no I/O.

A sender picks a random SSRC, a random first sequence number and a random first timestamp
(RFC 3550 §5.1: so a known-plaintext attack on encrypted streams has nothing to start from), then
adds 1 to the sequence number per packet and the number of samples per packet to the timestamp,
both modulo their field size.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER_BYTES = 12
_HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class RtpError(ValueError):
    """Bytes that are not an RTP packet we can read."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        first = (RTP_VERSION << 6) | len(self.csrc)
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        head = _HEADER.pack(first, second, self.seq % SEQ_MOD, self.timestamp % TS_MOD, self.ssrc)
        return head + b"".join(struct.pack("!I", c) for c in self.csrc) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Datagram -> RtpPacket; CSRCs, a header extension and padding are handled. Raises RtpError."""
    if len(data) < HEADER_BYTES:
        raise RtpError(f"RTP packet of {len(data)} bytes is shorter than its header")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, expected 2")
    csrc_count = first & 0x0F
    offset = HEADER_BYTES + 4 * csrc_count
    if len(data) < offset:
        raise RtpError("truncated CSRC list")
    csrc = struct.unpack_from(f"!{csrc_count}I", data, HEADER_BYTES) if csrc_count else ()
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        words = struct.unpack_from("!H", data, offset + 2)[0]
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes, itself included
        pad = data[-1]
        if pad == 0 or offset + pad > len(data):
            raise RtpError("bad padding length")
        end -= pad
    if offset > end:
        raise RtpError("header extension runs past the packet")
    return RtpPacket(second & 0x7F, seq, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80), tuple(csrc))


def seq_delta(newer: int, older: int) -> int:
    """newer - older in sequence-number space, in [-32768, 32767] (handles the wrap at 65535)."""
    return (newer - older + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def ts_delta(newer: int, older: int) -> int:
    """newer - older in timestamp space (32-bit wrap), signed."""
    return (newer - older + TS_MOD // 2) % TS_MOD - TS_MOD // 2


class RtpStream:
    """The sending side of one RTP stream: SSRC, next sequence number, next timestamp."""

    def __init__(self, payload_type: int, *, ssrc: int | None = None, seq: int | None = None,
                 timestamp: int | None = None):
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.seq = secrets.randbits(16) if seq is None else seq
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self.packets_sent = 0
        self.octets_sent = 0
        self._talkspurt = True

    def packet(self, payload: bytes, samples: int, *, payload_type: int | None = None) -> RtpPacket:
        """The next packet carrying `payload` (`samples` long); advances seq and timestamp."""
        pkt = RtpPacket(self.payload_type if payload_type is None else payload_type, self.seq, self.timestamp,
                        self.ssrc, payload, marker=self._talkspurt)
        self._talkspurt = False
        self.seq = (self.seq + 1) % SEQ_MOD
        self.timestamp = (self.timestamp + samples) % TS_MOD
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return pkt

    def skip(self, samples: int) -> None:
        """Time passed without a packet (a missed pacing slot): the timestamp keeps real time,
        and the next packet starts a talkspurt so the receiver re-syncs its playout."""
        self.timestamp = (self.timestamp + samples) % TS_MOD
        self._talkspurt = True

    def event_packet(self, payload: bytes, timestamp: int, *, payload_type: int, marker: bool) -> RtpPacket:
        """An RFC 4733 event packet: same SSRC and sequence space, the event's own timestamp."""
        pkt = RtpPacket(payload_type, self.seq, timestamp, self.ssrc, payload, marker=marker)
        self.seq = (self.seq + 1) % SEQ_MOD
        self.packets_sent += 1
        return pkt
