"""DTMF: RFC 4733 telephone events and SIP INFO bodies."""

from __future__ import annotations

import pytest

from voice.gateways.sip.dtmf import (
    DtmfError,
    DtmfReceiver,
    build_event,
    key_press_payloads,
    parse_event,
    parse_info_body,
)


def test_event_payload_layout_matches_rfc_4733():
    # digit 5, end bit, volume 10, duration 800 samples
    assert build_event("5", end=True, duration_samples=800, volume_dbm0=10) == bytes([5, 0x8A, 0x03, 0x20])


@pytest.mark.parametrize(("code", "digit"), [(0, "0"), (9, "9"), (10, "*"), (11, "#"), (12, "A"), (15, "D")])
def test_event_codes_map_to_keys(code, digit):
    assert parse_event(bytes([code, 0, 0, 160])).digit == digit


def test_non_dtmf_events_and_short_payloads_are_refused():
    with pytest.raises(DtmfError):
        parse_event(bytes([16, 0, 0, 0]))  # flash
    with pytest.raises(DtmfError):
        parse_event(b"\x01")


def test_a_key_press_is_reported_once_despite_repeats_and_triple_end():
    receiver = DtmfReceiver()
    got = [receiver.feed(8000, payload) for payload, _ in key_press_payloads("7", duration_ms=100)]
    assert [d for d in got if d] == ["7"]


def test_the_same_key_twice_is_two_presses():
    receiver = DtmfReceiver()
    for timestamp in (8000, 9600):
        for payload, _ in key_press_payloads("1"):
            receiver.feed(timestamp, payload)
    assert receiver.digits == "11"


def test_a_press_whose_start_was_lost_is_still_reported_from_its_end_packet():
    receiver = DtmfReceiver()
    assert receiver.feed(100, build_event("#", end=True, duration_samples=800)) == "#"


def test_key_press_packets_mark_the_first_and_end_three_times():
    packets = key_press_payloads("3", duration_ms=100)
    assert packets[0][1] is True and not any(m for _, m in packets[1:])
    assert [parse_event(p).end for p, _ in packets[-3:]] == [True] * 3


@pytest.mark.parametrize(("ctype", "body", "digit"), [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
    ("application/dtmf-relay", b"Signal= *\r\n", "*"),
    ("application/dtmf", b"11", "#"),
    ("application/dtmf", b"#", "#"),
    ("text/plain", b"5", None),
    ("application/dtmf-relay", b"Duration=160", None),
])
def test_sip_info_bodies(ctype, body, digit):
    assert parse_info_body(ctype, body) == digit
