"""Call cleanup in the gateway, end to end in one process: a scripted phone, a stand-in voice server."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import serve

from voice.gateways.sip.bridge import BridgeSettings
from voice.gateways.sip.gateway import GatewaySettings, SipGateway
from voice.gateways.sip.message import SipMessage, header_params, parse_message
from voice.gateways.sip.ua import UaSettings
from voice.protocol import Frame, MessageType, decode_frame, encode_bye, encode_frame
from voice.protocol import messages as msg

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 10000 RTP/AVP 0\r\n")


async def fake_voice_server(end_after_s: float | None):
    """Answers HELLO with READY; then says BYE after `end_after_s` (None: never)."""

    async def handler(ws):
        hello = msg.parse_hello(decode_frame(await ws.recv()).payload)
        ready = msg.Ready(session_id="s1", input=hello.input, output=hello.output, server="fake")
        await ws.send(encode_frame(Frame(MessageType.READY, payload=msg.encode_ready(ready))))
        if end_after_s is None:
            async for _ in ws:
                pass
            return
        await asyncio.sleep(end_after_s)
        await ws.send(encode_frame(Frame(MessageType.BYE, payload=encode_bye())))
        await ws.close()

    return await serve(handler, "127.0.0.1", 0)


class Phone(asyncio.DatagramProtocol):
    def __init__(self):
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.inbox.put_nowait(parse_message(data))

    async def expect(self, what, timeout_s: float = 5.0) -> SipMessage:
        async with asyncio.timeout(timeout_s):
            while True:
                m = await self.inbox.get()
                if m.status == what or m.method == what:
                    return m


async def place_call(gateway_port: int, *, tmp_path, **settings):
    loop = asyncio.get_running_loop()
    phone = Phone()
    transport, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    head = (f"INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKg1\r\n"
            f"From: <sip:phone@127.0.0.1>;tag=p1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: gw-1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:phone@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n{SDP}")
    transport.sendto(head.encode(), ("127.0.0.1", gateway_port))
    return phone, transport, port


def ack(port: int, tag: str) -> bytes:
    return (f"ACK sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKg2\r\n"
            f"From: <sip:phone@127.0.0.1>;tag=p1\r\nTo: <sip:agent@127.0.0.1>;tag={tag}\r\nCall-ID: gw-1\r\n"
            f"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode()


async def run_gateway(server_url: str, tmp_path, rtp_timeout_s: float = 30.0) -> SipGateway:
    gateway = SipGateway(GatewaySettings(
        ua=UaSettings(port=0, t1_s=0.1), bridge=BridgeSettings(server_url=server_url, connect_timeout_s=2),
        rtp_ports=range(41600, 41700), rtp_timeout_s=rtp_timeout_s, event_log=tmp_path / "events.jsonl"))
    await gateway.start()
    return gateway


def events(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("server_ends_s", "rtp_timeout_s", "reason"), [
    (0.5, 30.0, "server ended the session"),   # the voice server leaves first
    (None, 0.5, "rtp timeout"),                # the phone goes silent (vanished)
])
async def test_the_gateway_hangs_up_when_the_other_side_vanishes(tmp_path, server_ends_s, rtp_timeout_s, reason):
    server = await fake_voice_server(server_ends_s)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    gateway = await run_gateway(url, tmp_path, rtp_timeout_s)
    phone, transport, port = await place_call(gateway.ua.settings.port, tmp_path=tmp_path)
    try:
        ok = await phone.expect(200)
        transport.sendto(ack(port, header_params(ok.get("To"))["tag"]), ("127.0.0.1", gateway.ua.settings.port))
        bye = await phone.expect("BYE")
        reply = "SIP/2.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in bye.headers
                                               if k in ("Via", "From", "To", "Call-ID", "CSeq")) + "\r\n"
        transport.sendto(reply.encode(), ("127.0.0.1", gateway.ua.settings.port))
        await asyncio.sleep(0.2)
        ended = [e for e in events(tmp_path) if e["type"] == "call_ended"]
        assert ended and ended[0]["reason"] == reason and not gateway.calls
    finally:
        transport.close()
        await gateway.stop()
        server.close()


async def test_an_unreachable_voice_server_gets_the_caller_a_503(tmp_path):
    gateway = await run_gateway("ws://127.0.0.1:9/ws", tmp_path)
    phone, transport, _ = await place_call(gateway.ua.settings.port, tmp_path=tmp_path)
    try:
        assert (await phone.expect(503)).cseq == (1, "INVITE")
        assert not gateway.calls
    finally:
        transport.close()
        await gateway.stop()
