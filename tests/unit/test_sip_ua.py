"""The SIP UA over real loopback UDP, with a scripted peer and a stand-in call handler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from voice.gateways.sip.digest import parse_challenge, parse_params
from voice.gateways.sip.message import SipMessage, header_params, parse_message
from voice.gateways.sip.register import Registration, RegistrationSettings
from voice.gateways.sip.sdp import SdpError, answer_offer
from voice.gateways.sip.ua import InviteResult, SipUserAgent, UaSettings

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 10000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
T1 = 0.04  # fast timers so retransmission tests take well under a second


class Handler:
    """Answers every INVITE after `delay_s` with an SDP answer; records what the UA told it."""

    def __init__(self, delay_s: float = 0.0, status: int = 200):
        self.delay_s, self.status = delay_s, status
        self.invites, self.ended, self.dtmf, self.confirmed = [], [], [], []

    async def on_invite(self, dialog, offer):
        self.invites.append(dialog)
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return InviteResult(self.status, "Nope")
        _, sdp = answer_offer(offer, local_host="127.0.0.1", local_port=40000, session_id=1, version=1)
        return InviteResult(200, "OK", sdp)

    def on_confirmed(self, dialog, answer):
        self.confirmed.append(dialog)

    async def on_reoffer(self, dialog, offer):
        if offer is None:
            raise SdpError("test handler wants an offer")
        return answer_offer(offer, local_host="127.0.0.1", local_port=40000, session_id=1, version=2)[1]

    def on_ended(self, dialog, reason):
        self.ended.append(reason)

    def on_dtmf(self, dialog, digit):
        self.dtmf.append(digit)


@dataclass
class Rig:
    ua: SipUserAgent
    handler: Handler
    peer: Peer
    send: Callable[[str], None]


class Peer(asyncio.DatagramProtocol):
    """A scripted phone (or proxy) on its own UDP port."""

    def __init__(self):
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.raw: list[bytes] = []

    def datagram_received(self, data, addr):
        self.raw.append(data)
        self.inbox.put_nowait(parse_message(data))

    async def expect(self, what, timeout_s: float = 2.0) -> SipMessage:
        """The next message whose status (int) or method (str) is `what`; others are skipped."""
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self.inbox.get()
                if msg.status == what or msg.method == what:
                    return msg

    async def silent(self, seconds: float) -> list[SipMessage]:
        await asyncio.sleep(seconds)
        out = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out


@pytest.fixture
async def rig():
    handler = Handler()
    ua = SipUserAgent(UaSettings(port=0, t1_s=T1, t2_s=4 * T1), handler)
    await ua.start()
    loop = asyncio.get_running_loop()
    peer = Peer()
    transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]

    def send(text: str) -> None:
        text = text.replace("PEERPORT", str(port))
        head, _, body = text.partition("\n\n")
        data = head.replace("\n", "\r\n") + "\r\n\r\n" + body
        transport.sendto(data.encode(), ("127.0.0.1", ua.settings.port))

    yield Rig(ua, handler, peer, send)
    transport.close()
    await ua.close()


def invite(branch="b1", cseq=1, call_id="call-1", extra="", to_tag="", body=SDP) -> str:
    to = "<sip:agent@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (f"INVITE sip:agent@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:PEERPORT;branch=z9hG4bK{branch};rport\n"
            f"From: <sip:phone@127.0.0.1>;tag=ft\nTo: {to}\nCall-ID: {call_id}\nCSeq: {cseq} INVITE\n"
            f"Contact: <sip:phone@127.0.0.1:PEERPORT>\nMax-Forwards: 70\n{extra}Content-Type: application/sdp\n"
            f"Content-Length: {len(body)}\n\n{body}")


def in_dialog(method, to_tag, cseq, branch, call_id="call-1", extra="", body="") -> str:
    return (f"{method} sip:agent@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:PEERPORT;branch=z9hG4bK{branch}\n"
            f"From: <sip:phone@127.0.0.1>;tag=ft\nTo: <sip:agent@127.0.0.1>;tag={to_tag}\nCall-ID: {call_id}\n"
            f"CSeq: {cseq} {method}\n{extra}Content-Length: {len(body)}\n\n{body}")


async def answered(peer, send, **kw) -> SipMessage:
    send(invite(**kw))
    await peer.expect(100)
    return await peer.expect(200)


async def test_invite_gets_100_trying_then_200_with_sdp_tag_and_contact(rig):
    ok = await answered(rig.peer, rig.send)
    assert header_params(ok.get("To")).get("tag") and ok.get("Contact").startswith("<sip:agent@127.0.0.1:")
    assert b"m=audio 40000 RTP/AVP 0 101" in ok.body and ok.get("Content-Type") == "application/sdp"


async def test_200_is_retransmitted_until_the_ack(rig):
    ok = await answered(rig.peer, rig.send)
    await rig.peer.expect(200, timeout_s=3 * T1)  # T1 later it comes again
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("ACK", tag, 1, "ack1"))
    await asyncio.sleep(T1)
    assert [m.status for m in await rig.peer.silent(6 * T1)] == []
    assert rig.handler.confirmed


async def test_without_an_ack_the_call_is_hung_up_after_64_t1(rig):
    await answered(rig.peer, rig.send)
    bye = await rig.peer.expect("BYE", timeout_s=64 * T1 + 2)
    assert "no ACK" in rig.handler.ended and bye.call_id == "call-1"


async def test_a_retransmitted_invite_is_answered_without_a_second_call(rig):
    ok = await answered(rig.peer, rig.send)
    rig.send(invite())
    again = await rig.peer.expect(200)
    assert len(rig.handler.invites) == 1 and again.get("To") == ok.get("To")


async def test_record_route_is_copied_and_bye_goes_through_the_proxy(rig):
    rr = "Record-Route: <sip:127.0.0.1:PEERPORT;lr;ftag=ft>\n"
    ok = await answered(rig.peer, rig.send, extra=rr)
    assert ok.get_all("Record-Route") and ";lr" in ok.get("Record-Route")
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("ACK", tag, 1, "ack1"))
    await asyncio.sleep(0.05)
    dialog = next(iter(rig.ua.dialogs.values()))
    task = asyncio.create_task(rig.ua.hangup(dialog))
    bye = await rig.peer.expect("BYE")  # it reached the "proxy" port, with the route set
    assert bye.uri.startswith("sip:phone@127.0.0.1:") and "lr" in bye.get("Route")
    assert header_params(bye.get("From"))["tag"] == tag and header_params(bye.get("To"))["tag"] == "ft"
    rig.send("SIP/2.0 200 OK\n" + "\n".join(f"{k}: {v}" for k, v in bye.headers) + "\n\n")
    assert (await task).status == 200


async def test_cancel_before_the_answer_gives_200_then_487(rig):
    rig.handler.delay_s = 0.3
    rig.send(invite())
    await rig.peer.expect(100)
    rig.send("CANCEL sip:agent@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:PEERPORT;branch=z9hG4bKb1;rport\n"
         "From: <sip:phone@127.0.0.1>;tag=ft\nTo: <sip:agent@127.0.0.1>\nCall-ID: call-1\nCSeq: 1 CANCEL\n"
         "Content-Length: 0\n\n")
    assert (await rig.peer.expect(200)).cseq == (1, "CANCEL")
    terminated = await rig.peer.expect(487)
    assert terminated.cseq == (1, "INVITE")
    rig.send(in_dialog("ACK", header_params(terminated.get("To"))["tag"], 1, "b1"))
    await asyncio.sleep(0.4)
    assert rig.handler.ended == ["cancelled"]
    assert not [m for m in await rig.peer.silent(4 * T1) if m.status == 200]  # no late 200 for the INVITE


async def test_bye_ends_the_call_and_an_unknown_bye_gets_481(rig):
    ok = await answered(rig.peer, rig.send)
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("ACK", tag, 1, "ack1"))
    rig.send(in_dialog("BYE", tag, 2, "bye1"))
    assert (await rig.peer.expect(200)).cseq == (2, "BYE") and rig.handler.ended == ["bye"]
    rig.send(in_dialog("BYE", tag, 3, "bye2"))
    await rig.peer.expect(481)


async def test_reinvite_to_hold_is_answered_recvonly(rig):
    ok = await answered(rig.peer, rig.send)
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("ACK", tag, 1, "ack1"))
    hold = SDP + "a=sendonly\r\n"
    rig.send(in_dialog("INVITE", tag, 2, "re1", extra="Content-Type: application/sdp\n", body=hold))
    reply = await rig.peer.expect(200)
    assert reply.cseq == (2, "INVITE") and b"a=recvonly" in reply.body and b"o=voice 1 2 " in reply.body


async def test_an_in_dialog_request_with_an_old_cseq_gets_500(rig):
    ok = await answered(rig.peer, rig.send, cseq=5)
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("ACK", tag, 5, "ack1"))
    rig.send(in_dialog("INFO", tag, 4, "info1"))
    await rig.peer.expect(500)


async def test_info_dtmf_reaches_the_handler(rig):
    ok = await answered(rig.peer, rig.send)
    tag = header_params(ok.get("To"))["tag"]
    rig.send(in_dialog("INFO", tag, 2, "info1", extra="Content-Type: application/dtmf-relay\n", body="Signal=7\r\n"))
    await rig.peer.expect(200)
    assert rig.handler.dtmf == ["7"]


async def test_options_is_answered_with_allow(rig):
    rig.send(in_dialog("OPTIONS", "x", 1, "o1").replace(";tag=x", ""))
    ok = await rig.peer.expect(200)
    assert "INVITE" in ok.get("Allow") and ok.get("Accept") == "application/sdp"


async def test_malformed_request_gets_400_and_the_ua_keeps_working(rig):
    rig.send(in_dialog("OPTIONS", "x", 1, "o1").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"))
    bad = await rig.peer.expect(400)
    assert "CSeq" in bad.reason
    rig.send("this is not SIP at all\n\n")
    rig.send("\x00\xff\xfe garbage")
    rig.send(in_dialog("OPTIONS", "x", 2, "o2").replace(";tag=x", ""))
    assert (await rig.peer.expect(200)).cseq == (2, "OPTIONS")


@pytest.mark.parametrize("sent_by", ["127.0.0.1:70000", "10.1.2.3:70000", "127.0.0.1:0", "127.0.0.1:²"])
async def test_a_via_port_no_socket_takes_gets_400_at_the_source_and_the_socket_survives(rig, sent_by):
    # issue 13 item 1: a top Via port above 65535 without rport made sendto raise OverflowError,
    # asyncio closed the SIP socket, and the gateway answered nothing more
    rig.send(in_dialog("OPTIONS", "x", 1, "v1").replace(";tag=x", "").replace("127.0.0.1:PEERPORT", sent_by))
    bad = await rig.peer.expect(400)  # answered where it came from, like rport
    assert "port" in bad.reason
    assert rig.ua.transport is not None and not rig.ua.transport.is_closing()
    rig.send(in_dialog("OPTIONS", "x", 2, "v2").replace(";tag=x", ""))
    assert (await rig.peer.expect(200)).cseq == (2, "OPTIONS")


async def test_a_contact_host_that_cannot_be_resolved_sends_no_bye_and_raises_nothing(rig):
    ok = await answered(rig.peer, rig.send)
    tag = header_params(ok.get("To"))["tag"]
    dialog = next(iter(rig.ua.dialogs.values()))
    dialog.remote_target = "sip:phone@bad\x00host:5060"  # getaddrinfo refuses it at once (no DNS in a test)
    rig.send(in_dialog("ACK", tag, 1, "a1"))
    assert await rig.ua.hangup(dialog) is None
    assert not rig.ua.transport.is_closing()


async def test_if_asyncio_ever_closes_the_sip_socket_it_is_bound_again(rig):
    port = rig.ua.settings.port
    rig.ua.transport._fatal_error(OverflowError("as sendto raised it"), "simulated")  # what asyncio does
    await asyncio.sleep(0.1)
    assert rig.ua.stats["rebinds"] == 1 and rig.ua.settings.port == port
    rig.send(in_dialog("OPTIONS", "x", 3, "v3").replace(";tag=x", ""))
    assert (await rig.peer.expect(200)).cseq == (3, "OPTIONS")


async def test_unknown_methods_get_501_and_known_unsupported_ones_405(rig):
    rig.send(in_dialog("FROBNICATE", "x", 1, "f1"))
    assert "INVITE" in (await rig.peer.expect(501)).get("Allow")
    rig.send(in_dialog("SUBSCRIBE", "x", 1, "s1"))
    await rig.peer.expect(405)


async def test_a_refused_call_gets_the_handlers_status_and_its_ack_stops_retransmission(rig):
    rig.handler.status = 503
    rig.send(invite())
    refused = await rig.peer.expect(503)
    rig.send(in_dialog("ACK", header_params(refused.get("To"))["tag"], 1, "b1"))
    await asyncio.sleep(0.05)
    assert not [m for m in await rig.peer.silent(4 * T1) if m.status == 503]


async def test_register_answers_the_digest_challenge(rig):
    loop = asyncio.get_running_loop()
    registrar = Peer()
    transport, _ = await loop.create_datagram_endpoint(lambda: registrar, local_addr=("127.0.0.1", 0))
    registrar_port = transport.get_extra_info("sockname")[1]

    def reply(request: SipMessage, status: str, extra: str = "") -> None:
        head = "\r\n".join(f"{k}: {v}" for k, v in request.headers if k in ("Via", "From", "To", "Call-ID", "CSeq"))
        transport.sendto(f"SIP/2.0 {status}\r\n{head}\r\n{extra}Content-Length: 0\r\n\r\n".encode(),
                         ("127.0.0.1", rig.ua.settings.port))

    reg = Registration(rig.ua, RegistrationSettings(aor=f"sip:agent@127.0.0.1:{registrar_port}", password="s3cret"))
    task = asyncio.create_task(reg.register(120))
    first = await registrar.expect("REGISTER")
    assert first.get("Authorization") is None and first.get("Expires") == "120"
    reply(first, "401 Unauthorized", 'WWW-Authenticate: Digest realm="test", nonce="abc", qop="auth"\r\n')
    second = await registrar.expect("REGISTER")
    creds = parse_params(second.get("Authorization").removeprefix("Digest "))
    from voice.gateways.sip.digest import digest_response

    expected, _ = digest_response(parse_challenge('Digest realm="test", nonce="abc", qop="auth"'), username="agent",
                                  password="s3cret", method="REGISTER", uri=creds["uri"], cnonce=creds["cnonce"])
    assert creds["response"] == expected and second.cseq[0] == first.cseq[0] + 1
    reply(second, "200 OK", "Expires: 90\r\n")
    assert await task == 90 and reg.registered.is_set()
    transport.close()
    with contextlib.suppress(Exception):
        await reg.unregister()
