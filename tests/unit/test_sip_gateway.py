"""Call cleanup in the gateway, end to end in one process: a scripted phone, a stand-in voice server."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.server import serve

from voice.client import ClientError, VoiceClient
from voice.gateways.sip.bridge import BridgeSettings
from voice.gateways.sip.gateway import GatewaySettings, SipGateway
from voice.gateways.sip.message import SipMessage, header_params, parse_message
from voice.gateways.sip.ua import UaSettings
from voice.protocol import ErrorCode, Frame, MessageType, decode_frame, encode_bye, encode_error, encode_frame
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


# ---------------------------------------------------------------- refusals and calls that never ACK (issue 13)


async def refusing_voice_server(*, with_error_frame: bool = True, text: str = "full"):
    """Refuses every connection at once, before any HELLO, as the real server does at capacity."""

    async def handler(ws):
        if with_error_frame:
            await ws.send(encode_frame(Frame(MessageType.ERROR, payload=encode_error(ErrorCode.SERVER_BUSY, text))))
        await ws.close(ErrorCode.SERVER_BUSY.value, "full")

    return await serve(handler, "127.0.0.1", 0)


class SessionCounter:
    """A stand-in voice server that answers READY and counts the sessions open now and at most."""

    def __init__(self):
        self.open = self.peak = 0

    async def handler(self, ws):
        hello = msg.parse_hello(decode_frame(await ws.recv()).payload)
        ready = msg.Ready(session_id="s", input=hello.input, output=hello.output, server="fake")
        await ws.send(encode_frame(Frame(MessageType.READY, payload=msg.encode_ready(ready))))
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            async for _ in ws:
                pass
        finally:
            self.open -= 1


def invite_from(port: int, n: int) -> bytes:
    return (f"INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKn{n}\r\n"
            f"From: <sip:phone@127.0.0.1>;tag=p{n}\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: flood-{n}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:phone@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n{SDP}").encode()


async def open_phone() -> tuple[Phone, asyncio.DatagramTransport, int]:
    phone = Phone()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: phone,
                                                                             local_addr=("127.0.0.1", 0))
    return phone, transport, transport.get_extra_info("sockname")[1]


@pytest.mark.parametrize("with_error_frame", [True, False])
async def test_a_refusal_before_hello_is_a_client_error_with_the_servers_code(monkeypatch, with_error_frame):
    # issue 13 item 5: SERVER_BUSY arriving before HELLO went out made connect() raise ConnectionClosedError
    server = await refusing_voice_server(with_error_frame=with_error_frame)
    client = VoiceClient(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws")
    send_frame = client.send_frame

    async def slow_send_frame(*args, **kwargs):
        await asyncio.sleep(0.2)  # the refusal and the close arrive first
        await send_frame(*args, **kwargs)

    monkeypatch.setattr(client, "send_frame", slow_send_frame)
    try:
        with pytest.raises(ClientError) as caught:
            await client.connect(timeout_s=5)
        assert caught.value.code == ErrorCode.SERVER_BUSY
    finally:
        server.close()


@pytest.mark.parametrize(("text", "retry_after"), [
    ("full", "5"),                                                            # the gateway's own default
    ("server is at its limit; retry after 7 s (retry_after_ms=7000)", "7"),  # the server's hint, passed on
])
async def test_a_refusing_voice_server_gets_the_caller_503_with_retry_after_and_frees_the_rtp_port(
        tmp_path, text, retry_after):
    server = await refusing_voice_server(text=text)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    gateway = SipGateway(GatewaySettings(
        ua=UaSettings(port=0, t1_s=0.05), bridge=BridgeSettings(server_url=url, connect_timeout_s=2),
        rtp_ports=range(41700, 41702), event_log=tmp_path / "events.jsonl"))  # a single RTP port
    await gateway.start()
    phone, transport, port = await open_phone()
    try:
        for n in range(2):  # the second call would get "no RTP port" if the first leaked it
            transport.sendto(invite_from(port, n), ("127.0.0.1", gateway.ua.settings.port))
            refused = await phone.expect(503)
            assert "SERVER_BUSY" in refused.reason and refused.get("Retry-After") == retry_after
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 41700))  # free again
        assert not gateway.calls
    finally:
        transport.close()
        await gateway.stop()
        server.close()


async def test_invites_that_never_ack_hold_few_sessions_and_release_them_at_64_t1(tmp_path):
    # issue 13 item 6: 20 INVITEs without ACK got 200 and held every server session for ~32 s
    counter = SessionCounter()
    server = await serve(counter.handler, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    t1_s = 0.03
    gateway = SipGateway(GatewaySettings(
        ua=UaSettings(port=0, t1_s=t1_s, t2_s=0.2), bridge=BridgeSettings(server_url=url, connect_timeout_s=2),
        rtp_ports=range(41710, 41760), max_unconfirmed_calls=3, event_log=tmp_path / "events.jsonl"))
    await gateway.start()
    phone, transport, port = await open_phone()
    try:
        for n in range(10):
            transport.sendto(invite_from(port, n), ("127.0.0.1", gateway.ua.settings.port))
        finals: dict[str, SipMessage] = {}
        async with asyncio.timeout(5):
            while len(finals) < 10:
                m = await phone.inbox.get()
                if m.status and m.status >= 200:
                    finals.setdefault(m.call_id, m)
        statuses = sorted(m.status for m in finals.values())
        assert statuses.count(200) == 3 and statuses.count(503) == 7, statuses
        assert all(m.get("Retry-After") for m in finals.values() if m.status == 503)
        assert counter.peak == 3
        await phone.expect("BYE", timeout_s=64 * t1_s + 2)  # Timer H: hung up...
        await asyncio.sleep(0.3)
        assert counter.open == 0 and not gateway.calls  # ...and the server sessions released
    finally:
        transport.close()
        await gateway.stop()
        server.close()


async def test_an_acked_call_frees_its_place_among_the_unconfirmed(tmp_path):
    counter = SessionCounter()
    server = await serve(counter.handler, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    gateway = SipGateway(GatewaySettings(
        ua=UaSettings(port=0, t1_s=0.1), bridge=BridgeSettings(server_url=url, connect_timeout_s=2),
        rtp_ports=range(41760, 41800), max_unconfirmed_calls=1, event_log=tmp_path / "events.jsonl"))
    await gateway.start()
    phone, transport, port = await open_phone()
    try:
        for n in range(3):
            transport.sendto(invite_from(port, n), ("127.0.0.1", gateway.ua.settings.port))
            ok = await phone.expect(200)
            ack_n = ack(port, header_params(ok.get("To"))["tag"]).replace(b"gw-1", f"flood-{n}".encode())
            transport.sendto(ack_n.replace(b"tag=p1", f"tag=p{n}".encode()), ("127.0.0.1", gateway.ua.settings.port))
            await asyncio.sleep(0.05)
        assert len(gateway.calls) == 3 and counter.open == 3
    finally:
        transport.close()
        await gateway.stop()
        server.close()


@pytest.mark.parametrize(("kind", "payload"), [
    (MessageType.EVENT, b'{"type":"transcript_final","utterance":"one"}'),  # wrong shape
    (MessageType.EVENT, b"[" * 500),                                          # not JSON we read
    (MessageType.AUDIO, b"\x01\x02\x03"),                                      # odd PCM16 length
])
async def test_a_bad_frame_from_the_server_ends_the_call_cleanly(tmp_path, kind, payload):
    async def handler(ws):
        hello = msg.parse_hello(decode_frame(await ws.recv()).payload)
        ready = msg.Ready(session_id="s1", input=hello.input, output=hello.output, server="fake")
        await ws.send(encode_frame(Frame(MessageType.READY, payload=msg.encode_ready(ready))))
        await asyncio.sleep(0.3)
        await ws.send(encode_frame(Frame(kind, payload=payload)))
        async for _ in ws:
            pass

    server = await serve(handler, "127.0.0.1", 0)
    gateway = await run_gateway(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws", tmp_path)
    phone, transport, port = await place_call(gateway.ua.settings.port, tmp_path=tmp_path)
    try:
        ok = await phone.expect(200)
        transport.sendto(ack(port, header_params(ok.get("To"))["tag"]), ("127.0.0.1", gateway.ua.settings.port))
        await phone.expect("BYE")
        await asyncio.sleep(0.1)
        ended = [e for e in events(tmp_path) if e["type"] == "call_ended"]
        assert ended and ended[0]["reason"].startswith("server error")
    finally:
        transport.close()
        await gateway.stop()
        server.close()
