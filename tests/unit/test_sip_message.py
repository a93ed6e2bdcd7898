"""SIP message parsing and building (RFC 3261), including malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice.gateways.sip.message import (
    SipParseError,
    build_request,
    build_response,
    header_params,
    name_addr_uri,
    parse_message,
    parse_uri,
    parse_via,
    split_commas,
)

GOLDEN = Path(__file__).resolve().parent.parent / "sip" / "golden"


def invite_bytes() -> bytes:
    return (GOLDEN / "invite_baresip.sip").read_bytes()  # captured from baresip 1.0.0


def request(lines: list[str], body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


BASIC = ["OPTIONS sip:agent@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKabc",
         "From: <sip:a@127.0.0.1>;tag=1", "To: <sip:agent@127.0.0.1>", "Call-ID: c1", "CSeq: 1 OPTIONS"]


def test_parses_a_real_baresip_invite():
    msg = parse_message(invite_bytes())
    assert (msg.method, msg.uri) == ("INVITE", "sip:bot@127.0.0.1:5081")
    assert msg.cseq == (35943, "INVITE") and msg.call_id == "d0d29c5cea3c294d"
    assert msg.branch == "z9hG4bK137e1cff88a98937"
    assert msg.body.startswith(b"v=0") and len(msg.body) == int(msg.get("Content-Length"))


def test_compact_header_names_are_canonical():
    lines = ["OPTIONS sip:a@h SIP/2.0", "v: SIP/2.0/UDP h;branch=z9hG4bK1", "f: <sip:b@h>;tag=x", "t: <sip:a@h>",
             "i: id", "CSeq: 2 OPTIONS", "l: 0"]
    msg = parse_message(request(lines))
    assert msg.get("Via") and msg.get("From") and msg.get("To") == "<sip:a@h>" and msg.call_id == "id"


def test_header_names_are_case_insensitive_and_lines_may_be_folded():
    msg = parse_message(request([*BASIC, "SUBJECT: hello", " world"]))
    assert msg.get("subject") == "hello world"


def test_lf_only_line_ends_are_accepted():
    msg = parse_message(request(BASIC).replace(b"\r\n", b"\n"))
    assert msg.method == "OPTIONS"


def test_list_headers_split_at_top_level_commas_only():
    msg = parse_message(request([*BASIC, 'Record-Route: <sip:p1;lr>, "a,b" <sip:p2;lr>', "Record-Route: <sip:p3>"]))
    assert msg.get_all("Record-Route") == ["<sip:p1;lr>", '"a,b" <sip:p2;lr>', "<sip:p3>"]


def test_body_is_cut_at_content_length():
    msg = parse_message(request([*BASIC, "Content-Length: 3"], body="abcdef"))
    assert msg.body == b"abc"


def test_a_response_is_parsed():
    msg = parse_message(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: c\r\n"
                        b"CSeq: 1 INVITE\r\n\r\n")
    assert (msg.status, msg.reason, msg.is_request) == (180, "Ringing", False)


@pytest.mark.parametrize(("data", "reason"), [
    (request([ln for ln in BASIC if not ln.startswith("Via")]), "missing Via"),
    (request([ln for ln in BASIC if not ln.startswith("Call-ID")]), "missing Call-ID"),
    (request([*BASIC[:5], "CSeq: x OPTIONS"]), "bad CSeq"),
    (request([*BASIC[:5], "CSeq: 1 INVITE"]), "does not match"),
    (request([*BASIC, "Content-Length: 50"], body="short"), "shorter"),
    (request([*BASIC, "Content-Length: -1"]), "Content-Length"),
    (request([*BASIC, "Max-Forwards: lots"]), "Max-Forwards"),
    (request(["OPTIONS sip:a@h SIP/3.0", *BASIC[1:]]), "request line"),
    (request(["OPTIONS", *BASIC[1:]]), "request line"),
    (request([*BASIC, "no colon here"]), "header line"),
    (b"SIP/2.0 999 Nope\r\nVia: x\r\n\r\n", "out of range"),
    (b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h", "blank line"),
    (b"\xff\xfe\r\n\r\n", "UTF-8"),
])
def test_malformed_messages_raise_with_a_reason(data, reason):
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert reason in info.value.reason


def test_a_malformed_request_keeps_its_headers_for_the_400():
    with pytest.raises(SipParseError) as info:
        parse_message(request([*BASIC[:5], "CSeq: x OPTIONS"]))
    assert info.value.partial is not None and info.value.partial.call_id == "c1"


def test_response_copies_via_from_to_callid_cseq_and_adds_the_to_tag():
    invite = parse_message(invite_bytes())
    resp = build_response(invite, 200, "OK", to_tag="t1")
    assert resp.get_all("Via") == invite.get_all("Via")
    assert resp.get("From") == invite.get("From") and resp.call_id == invite.call_id and resp.cseq == invite.cseq
    assert header_params(resp.get("To"))["tag"] == "t1"


def test_response_copies_record_route_in_order_into_2xx():
    invite = parse_message(request([*BASIC, "Record-Route: <sip:p1;lr>", "Record-Route: <sip:p2;lr>"]))
    assert build_response(invite, 200, "OK").get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert build_response(invite, 486, "Busy").get_all("Record-Route") == []


def test_100_trying_carries_no_to_tag():
    invite = parse_message(invite_bytes())
    assert "tag" not in header_params(build_response(invite, 100, "Trying", to_tag="t1").get("To"))


def test_built_messages_round_trip_with_a_correct_content_length():
    msg = build_request("INFO", "sip:a@h", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", "<sip:b@h>;tag=1"),
                                            ("To", "<sip:a@h>;tag=2"), ("Call-ID", "x"), ("CSeq", "3 INFO")],
                        body=b"Signal=5\r\n")
    data = msg.to_bytes()
    assert b"Content-Length: 10\r\n" in data and b"Max-Forwards: 70" in data
    again = parse_message(data)
    assert again.body == b"Signal=5\r\n" and again.cseq == (3, "INFO")


def test_uri_parts():
    uri = parse_uri("sip:agent@10.0.0.1:5062;transport=udp;lr")
    assert (uri.user, uri.host, uri.port, uri.loose_route) == ("agent", "10.0.0.1", 5062, True)
    assert parse_uri("sip:[::1]:5060").host == "::1"
    with pytest.raises(SipParseError):
        parse_uri("tel:+15551234")
    with pytest.raises(SipParseError):
        parse_uri("sip:a@h:99999")


def test_via_sent_by_and_params():
    via = parse_via("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport")
    assert (via.transport, via.host, via.port, via.params) == ("UDP", "127.0.0.1", 5070, {"branch": "z9hG4bK1",
                                                                                        "rport": ""})
    with pytest.raises(SipParseError):
        parse_via("garbage")


def test_name_addr_helpers():
    assert name_addr_uri('"Bob, Jr" <sip:bob@h>;tag=9') == "sip:bob@h"
    assert name_addr_uri("sip:bob@h;tag=9") == "sip:bob@h"
    assert split_commas('a, "b,c", <d,e>') == ["a", '"b,c"', "<d,e>"]
