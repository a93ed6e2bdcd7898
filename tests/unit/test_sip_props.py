"""Properties of the SIP edge under any input: every datagram is parsed or is a 400-able
SipParseError, every header value a peer controls leaves the UA answering (never raising, never
sending to an address a socket refuses, never closing its socket), and SDP, RTP and DTMF parsers
answer a value or their own error."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voice.gateways.sip.address import usable_destination
from voice.gateways.sip.dtmf import DtmfError, parse_event, parse_info_body
from voice.gateways.sip.message import SipParseError, build_response, header_params, parse_message
from voice.gateways.sip.rtp import RtpError, RtpPacket, parse_rtp
from voice.gateways.sip.sdp import SdpError, answer_offer, build_offer, parse_sdp
from voice.gateways.sip.ua import InviteResult, SipUserAgent, UaSettings

GOLDEN_INVITE = (Path(__file__).resolve().parent.parent / "sip" / "golden" / "invite_baresip.sip").read_bytes()
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 10000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
props = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
line_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=24)
numbers = st.one_of(st.integers(-10, 200_000).map(str), st.sampled_from(["", "²", "١٢", "0x10", "9" * 5000, "1 2"]),
                    line_text)


def parsed_or_none(data: bytes):
    try:
        return parse_message(data)
    except SipParseError as e:
        assert e.reason
        return None


# ---------------------------------------------------------------- the parser


@props
@given(st.binary(max_size=600))
def test_any_datagram_parses_or_is_a_sip_parse_error(data):
    parsed_or_none(data)


@st.composite
def mutated_invite(draw) -> bytes:
    data = bytearray(GOLDEN_INVITE)
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "dup_line"]))
        i = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[i:i + draw(st.integers(1, 40))]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
        else:
            start = data.rfind(b"\n", 0, i) + 1
            end = data.find(b"\n", i) + 1 or len(data)
            data[start:start] = data[start:end]
    return bytes(data)


@props
@given(mutated_invite())
def test_a_mutated_invite_parses_and_its_response_reparses_or_it_is_a_parse_error(data):
    msg = parsed_or_none(data)
    if msg is not None and msg.is_request:
        response = build_response(msg, 400, "Bad Request", to_tag="t1").to_bytes()
        assert parse_message(response).status == 400


# ---------------------------------------------------------------- the UA with hostile header values


@dataclass
class RecordingTransport:
    """Stands in for the UDP socket: keeps what the UA sends and where."""

    sent: list[tuple[bytes, tuple]] = field(default_factory=list)

    def sendto(self, data: bytes, address: tuple) -> None:
        self.sent.append((data, address))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Handler:
    async def on_invite(self, dialog, offer):
        if offer is None:
            return InviteResult(200, "OK", build_offer(local_host="127.0.0.1", local_port=40000, session_id=1,
                                                       version=1))
        _, sdp = answer_offer(offer, local_host="127.0.0.1", local_port=40000, session_id=1, version=1)
        return InviteResult(200, "OK", sdp)

    def on_confirmed(self, dialog, answer): ...

    async def on_reoffer(self, dialog, offer):
        return build_offer(local_host="127.0.0.1", local_port=40000, session_id=1, version=2)

    def on_ended(self, dialog, reason): ...

    def on_dtmf(self, dialog, digit): ...


class Problems(logging.Handler):
    """Every log record at ERROR or with a traceback: there must be none."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@st.composite
def hostile_request(draw) -> tuple[str, str]:
    """(method, request text) with every peer-controlled header value drawn from hostile values;
    TOTAG in the text is replaced by the UA's own tag from the call it answered."""
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REGISTER", "FOO"]))
    host = draw(st.one_of(st.just("127.0.0.1"), st.just("[::1]"), st.just("example.invalid"), line_text))
    port = draw(st.one_of(st.none(), numbers))
    sent_by = host if port is None else f"{host}:{port}"
    params = draw(st.lists(st.one_of(st.just("rport"), numbers.map(lambda n: f"rport={n}"),
                                     line_text.map(lambda t: f"received={t}"), line_text.map(lambda t: f"x={t}")),
                           max_size=3))
    branch = draw(st.one_of(st.just("z9hG4bKfixed"), line_text))
    via = ";".join([f"SIP/2.0/UDP {sent_by}", f"branch={branch}", *params])
    contact = draw(st.one_of(st.just("<sip:phone@127.0.0.1:5099>"), numbers.map(lambda p: f"<sip:phone@127.0.0.1:{p}>"),
                             line_text.map(lambda h: f"<sip:phone@{h}>"), line_text.map(lambda u: f"<sip:{u}>"),
                             line_text))
    to_tag = draw(st.one_of(st.just(""), st.just(";tag=TOTAG"), line_text.map(lambda t: f";tag={t}")))
    cseq_method = draw(st.one_of(st.just(method), line_text))
    body = draw(st.one_of(st.just(""), st.just(SDP), line_text))
    headers = [f"Via: {via}", f"From: <sip:phone@127.0.0.1>;tag={draw(line_text)}",
               f"To: <sip:agent@127.0.0.1>{to_tag}", f"Call-ID: {draw(st.one_of(st.just('c1'), line_text))}",
               f"CSeq: {draw(numbers)} {cseq_method}", f"Contact: {contact}",
               f"Max-Forwards: {draw(numbers)}", f"Content-Length: {draw(st.one_of(st.just(str(len(body))), numbers))}"]
    if body == SDP:
        headers.append("Content-Type: application/sdp")
    uri = draw(st.one_of(st.just("sip:agent@127.0.0.1"), line_text))
    return method, "\r\n".join([f"{method} {uri} SIP/2.0", *draw(st.permutations(headers))]) + "\r\n\r\n" + body


def to_tag_of(transport: RecordingTransport) -> str:
    for data, _ in transport.sent:
        msg = parse_message(data)
        if msg.status == 200 and msg.cseq[1] == "INVITE":
            return header_params(msg.get("To") or "").get("tag", "")
    return "none"


async def feed(requests: list[str]) -> tuple[RecordingTransport, list[logging.LogRecord]]:
    problems = Problems()
    logger = logging.getLogger("voice.gateways.sip")
    logger.addHandler(problems)
    ua = SipUserAgent(UaSettings(port=5080, t1_s=0.005, t2_s=0.02), Handler())
    transport = RecordingTransport()
    ua.transport = transport  # type: ignore[assignment]
    try:
        first = ("INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKinv\r\n"
                 "From: <sip:phone@127.0.0.1>;tag=p\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c1\r\n"
                 f"CSeq: 1 INVITE\r\nContact: <sip:phone@127.0.0.1:5099>\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}")
        ua.datagram_received(first.encode(), ("127.0.0.1", 5099))
        await asyncio.sleep(0.005)
        for text in requests:
            data = text.replace("TOTAG", to_tag_of(transport)).encode()
            ua.datagram_received(data, ("127.0.0.1", 5099))
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        for dialog in list(ua.dialogs.values()):  # the BYE we would send, built from the caller's headers
            bye = dialog.build_request("BYE", "127.0.0.1", 5080, ua.contact)
            transport.sent.append((bye.to_bytes(), dialog.next_destination()))
    finally:
        await ua.close()
        logger.removeHandler(problems)
    return transport, problems.records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_request(), min_size=1, max_size=4))
@example([("OPTIONS", "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:70000;branch=z9hG4bKx\r\n"
           "From: <sip:p@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")])  # issue 13 item 1
def test_no_header_value_makes_the_ua_raise_or_send_where_a_socket_refuses(requests):
    assert_ua_copes([text for _, text in requests])


def assert_ua_copes(requests: list[str]) -> None:
    """No log record at ERROR, every datagram parses back, every response to an address sendto takes."""
    transport, problems = asyncio.run(feed(requests))
    assert not problems, [r.getMessage() for r in problems]
    for data, (host, port) in transport.sent:
        assert 0 < port < 65536 and isinstance(host, str)
        parse_message(data)  # everything we send is SIP we can read back
    for data, (host, _) in transport.sent:
        if not parse_message(data).is_request:  # responses go to an address checked for sendto
            assert ipaddress.ip_address(host).version == 4


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(line_text, line_text.map(lambda u: f"<sip:{u}>"), line_text.map(lambda u: f"<{u}>")),
       st.sampled_from(["Contact", "From"]))
@example("<sip:a b@127.0.0.1>", "Contact")  # a space in the URI: our BYE's request line would not parse
@example("x" * 300, "Contact")
def test_any_contact_or_from_of_an_invite_gets_400_or_a_dialog_whose_bye_parses(value, header):
    invite = ("INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKc\r\n"
              "From: <sip:phone@127.0.0.1>;tag=p\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c2\r\n"
              "CSeq: 1 INVITE\r\nContact: <sip:phone@127.0.0.1:5099>\r\nContent-Length: 0\r\n\r\n")
    if header == "Contact":
        invite = invite.replace("Contact: <sip:phone@127.0.0.1:5099>", f"Contact: {value}")
    else:
        invite = invite.replace("Contact: <sip:phone@127.0.0.1:5099>\r\n", "").replace(
            "From: <sip:phone@127.0.0.1>;tag=p", f"From: {value};tag=p")
    assert_ua_copes([invite])


# ---------------------------------------------------------------- SDP, RTP, DTMF, addresses


sdp_lines = st.one_of(
    st.sampled_from(["v=0", "o=- 1 1 IN IP4 10.0.0.1", "c=IN IP4 10.0.0.1", "c=IN IP6 ::1", "c=IN IP4 host.example",
                     "m=audio 4000 RTP/AVP 0 8 101", "m=audio 99999 RTP/AVP 0", "m=video 0 RTP/AVP 96",
                     "a=rtpmap:101 telephone-event/8000", "a=rtpmap:0 PCMU/8000", "a=sendonly", "a=ptime:²",
                     "a=rtpmap:² PCMU/8000", "m=audio ² RTP/AVP ²", "a=fmtp:101 0-15"]),
    line_text)


@props
@given(st.lists(sdp_lines, max_size=12))
def test_any_sdp_parses_and_is_answered_or_is_an_sdp_error(lines):
    try:
        offer = parse_sdp("\r\n".join(["v=0", *lines]))
        agreed, text = answer_offer(offer, local_host="127.0.0.1", local_port=40000, session_id=1, version=1)
    except SdpError:
        return
    assert 0 < agreed.remote_port < 65536 and parse_sdp(text).media


@props
@given(st.binary(max_size=80))
def test_any_datagram_is_an_rtp_packet_or_an_rtp_error(data):
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert len(packet.payload) <= len(data)


@props
@given(st.integers(0, 127), st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.binary(max_size=160), st.booleans(), st.lists(st.integers(0, 2**32 - 1), max_size=15))
def test_every_rtp_packet_parses_back_to_itself(pt, seq, ts, ssrc, payload, marker, csrc):
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, tuple(csrc))
    assert parse_rtp(packet.to_bytes()) == packet


@props
@given(st.binary(max_size=8), st.text(max_size=20), st.binary(max_size=40))
def test_dtmf_payloads_and_info_bodies_give_a_digit_none_or_a_dtmf_error(payload, content_type, body):
    with contextlib.suppress(DtmfError):
        parse_event(payload)
    for ctype in (content_type, "application/dtmf-relay", "application/dtmf"):
        digit = parse_info_body(ctype, body)
        assert digit is None or len(digit) == 1


@props
@given(st.one_of(st.tuples(st.one_of(line_text, st.ip_addresses().map(str)), st.integers(-5, 70_000)),
                 st.tuples(st.none(), st.booleans()), st.text(max_size=5)),
       st.sampled_from([socket.AF_INET, socket.AF_INET6]))
def test_a_usable_destination_is_an_ip_literal_and_a_port_a_socket_takes(address, family):
    destination = usable_destination(address, family)
    if destination is not None:
        host, port = destination
        assert 0 < port < 65536 and ipaddress.ip_address(host)
        with socket.socket(family, socket.SOCK_DGRAM) as s:  # the socket itself accepts it (no DNS)
            s.setblocking(False)
            with contextlib.suppress(OSError):  # unreachable is fine: OverflowError/TypeError would not be
                s.sendto(b"", destination)
