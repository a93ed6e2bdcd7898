"""`voice sip`: run the SIP gateway in front of a voice server.

The parser is built without importing numpy, websockets or the codecs, so `voice --help` stays
fast; `run()` imports the gateway when the command actually runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

READY_LINE = "voice sip ready on udp:{host}:{port}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sip", help="SIP gateway: answer phone calls and bridge them to a voice server")
    p.add_argument("--listen", default="127.0.0.1:5080", help="SIP UDP address (default 127.0.0.1:5080)")
    p.add_argument("--public-host", help="address for Contact and SDP when --listen is 0.0.0.0 or behind NAT")
    p.add_argument("--server", default="ws://127.0.0.1:8765/ws", help="voice server WebSocket URL")
    p.add_argument("--token", default=os.environ.get("VOICE_TOKEN"), help="voice server bearer token")
    p.add_argument("--rtp-ports", default="40000-40100", help="RTP port range, inclusive (even ports are used)")
    p.add_argument("--register", metavar="AOR", help="register at a registrar, e.g. sip:agent@pbx.example")
    p.add_argument("--password", default=os.environ.get("VOICE_SIP_PASSWORD"), help="registrar digest password")
    p.add_argument("--auth-user", help="digest user name if it differs from the AOR's user")
    p.add_argument("--agent", help="agent name passed to the server in HELLO options")
    p.add_argument("--codec", choices=["pcm16", "opus"], default="pcm16", help="audio codec to the voice server")
    p.add_argument("--rtp-timeout", type=float, default=30.0, help="hang up after this many s without RTP")
    p.add_argument("--max-calls", type=int, default=50)
    p.add_argument("--ring-ms", type=int, default=0, help="send 180 Ringing and answer after this many ms")
    p.add_argument("--max-unconfirmed-calls", type=int, default=8,
                   help="calls being set up or waiting for their ACK at once; more get 503 (default 8)")
    p.add_argument("--t1-ms", type=int, default=500,
                   help="SIP timer T1 (RFC 3261 §17): a call whose 200 is never ACKed ends after 64*T1")
    p.add_argument("--event-log", help="append one JSON line per call event (transcripts, agent text, stats)")
    p.set_defaults(func=run)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _port_range(text: str) -> range:
    low, sep, high = text.partition("-")
    if not (low.isdigit() and high.isdigit()) or not sep or int(low) > int(high):
        raise ValueError(f"expected LOW-HIGH, got {text!r}")
    return range(int(low), int(high) + 1)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voice.gateways.sip.bridge import BridgeSettings
    from voice.gateways.sip.gateway import GatewaySettings
    from voice.gateways.sip.register import RegistrationSettings
    from voice.gateways.sip.ua import UaSettings

    try:
        host, port = _host_port(args.listen)
        ports = _port_range(args.rtp_ports)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.t1_ms < 1 or args.max_unconfirmed_calls < 1:
        print("error: --t1-ms and --max-unconfirmed-calls must be at least 1", file=sys.stderr)
        return 2
    if host in ("0.0.0.0", "::") and not args.public_host:
        print("error: --listen on all interfaces needs --public-host (the address phones can reach)",
              file=sys.stderr)
        return 2
    user = "agent"
    registration = None
    if args.register:
        registration = RegistrationSettings(aor=args.register, password=args.password, username=args.auth_user)
        user = args.register.split(":", 1)[-1].split("@", 1)[0] or user
    settings = GatewaySettings(
        ua=UaSettings(host=host, port=port, public_host=args.public_host, user=user, ring_ms=args.ring_ms,
                      t1_s=args.t1_ms / 1000),
        bridge=BridgeSettings(server_url=args.server, token=args.token, agent=args.agent, codec=args.codec),
        rtp_ports=ports, rtp_timeout_s=args.rtp_timeout, max_calls=args.max_calls,
        max_unconfirmed_calls=args.max_unconfirmed_calls,
        event_log=Path(args.event_log) if args.event_log else None, registration=registration)
    try:
        asyncio.run(serve(settings))
    except OSError as e:
        print(f"error: cannot run the SIP gateway: {e}", file=sys.stderr)
        return 1
    return 0


async def serve(settings) -> None:
    from voice.gateways.sip.gateway import SipGateway

    gateway = SipGateway(settings)
    await gateway.start()
    print(READY_LINE.format(host=settings.ua.advertised_host, port=settings.ua.port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
