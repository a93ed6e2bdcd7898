"""RTP packets (RFC 3550 §5.1): layout, parsing edge cases, and the sender's counters."""

from __future__ import annotations

import struct

import pytest

from voice.gateways.sip.rtp import RtpError, RtpPacket, RtpStream, parse_rtp, seq_delta, ts_delta

# version 2, marker, PT 0, seq 0x1234, ts 0x00000a00, SSRC 0xdeadbeef, payload ff ff
GOLDEN = bytes.fromhex("80 80 1234 00000a00 deadbeef ffff".replace(" ", ""))


def test_packet_serialises_to_the_rfc_layout():
    pkt = RtpPacket(payload_type=0, seq=0x1234, timestamp=0xA00, ssrc=0xDEADBEEF, payload=b"\xff\xff", marker=True)
    assert pkt.to_bytes() == GOLDEN


def test_parse_reads_every_header_field():
    pkt = parse_rtp(GOLDEN)
    assert (pkt.payload_type, pkt.seq, pkt.timestamp, pkt.ssrc, pkt.marker, pkt.payload) == (
        0, 0x1234, 0xA00, 0xDEADBEEF, True, b"\xff\xff")


def test_parse_skips_csrcs_and_header_extension():
    head = struct.pack("!BBHII", 0x80 | 0x10 | 2, 8, 1, 2, 3)
    csrcs = struct.pack("!II", 10, 11)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    pkt = parse_rtp(head + csrcs + extension + b"abc")
    assert pkt.csrc == (10, 11) and pkt.payload == b"abc" and pkt.payload_type == 8


def test_parse_removes_padding():
    head = struct.pack("!BBHII", 0x80 | 0x20, 0, 1, 2, 3)
    assert parse_rtp(head + b"abc" + b"\x00\x00\x03").payload == b"abc"


@pytest.mark.parametrize("data", [
    b"\x80\x00",                                              # shorter than the header
    bytes([0x40]) + GOLDEN[1:],                               # version 1
    struct.pack("!BBHII", 0x80 | 3, 0, 1, 2, 3) + b"\x00" * 4,  # CSRC count past the end
    struct.pack("!BBHII", 0x80 | 0x20, 0, 1, 2, 3) + b"\x00",  # padding length 0
    struct.pack("!BBHII", 0x80 | 0x10, 0, 1, 2, 3) + struct.pack("!HH", 1, 50),  # extension past the end
])
def test_malformed_packets_raise_rtp_error(data):
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_stream_advances_seq_by_one_and_timestamp_by_samples():
    stream = RtpStream(0, ssrc=7, seq=100, timestamp=1000)
    first, second = stream.packet(b"a" * 160, 160), stream.packet(b"b" * 160, 160)
    assert (second.seq - first.seq, second.timestamp - first.timestamp) == (1, 160)
    assert first.ssrc == second.ssrc == 7


def test_stream_marks_only_the_first_packet_of_a_talkspurt():
    stream = RtpStream(0)
    assert [stream.packet(b"", 160).marker for _ in range(3)] == [True, False, False]


def test_stream_wraps_seq_and_timestamp():
    stream = RtpStream(0, seq=65535, timestamp=2**32 - 80)
    stream.packet(b"", 160)
    pkt = stream.packet(b"", 160)
    assert (pkt.seq, pkt.timestamp) == (0, 80)


def test_skip_keeps_real_time_and_restarts_the_talkspurt():
    stream = RtpStream(0, seq=1, timestamp=0)
    stream.packet(b"", 160)
    stream.skip(320)
    pkt = stream.packet(b"", 160)
    assert (pkt.seq, pkt.timestamp, pkt.marker) == (2, 480, True)


def test_streams_pick_random_ssrc_seq_and_timestamp():
    a, b = RtpStream(0), RtpStream(0)
    assert (a.ssrc, a.seq, a.timestamp) != (b.ssrc, b.seq, b.timestamp)


def test_sequence_deltas_handle_the_wrap():
    assert seq_delta(2, 65534) == 4
    assert seq_delta(65534, 2) == -4
    assert ts_delta(10, 2**32 - 10) == 20
