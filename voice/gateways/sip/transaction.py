"""The SIP transaction layer over UDP (RFC 3261 §17, §18): datagrams in and out, no call logic.

It parses each datagram (a malformed request gets 400 when it says where to send it; nothing
ever raises out of here), notes the real source in the top Via (`received`/`rport`), answers
retransmitted non-INVITE requests from a cache of final responses, routes responses per Via, and
runs client transactions (`request()`: retransmit from T1 doubling to T2 until a final response).
The user agent (ua.py) subclasses it and handles the requests themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass

from voice import __version__
from voice.gateways.sip.address import usable_destination
from voice.gateways.sip.message import (
    SipMessage,
    SipParseError,
    build_response,
    header_params,
    new_tag,
    parse_message,
    parse_via,
    split_commas,
)

log = logging.getLogger(__name__)

TRANSACTION_LINGER_S = 32.0  # 64*T1: how long a finished transaction still absorbs retransmissions


@dataclass
class UaSettings:
    host: str = "127.0.0.1"          # address the SIP socket binds
    port: int = 5080
    public_host: str | None = None   # address written into Contact/Via/SDP; defaults to host
    user: str = "agent"
    ring_ms: int = 0                 # > 0: send 180 Ringing and answer after this long
    t1_s: float = 0.5
    t2_s: float = 4.0

    @property
    def advertised_host(self) -> str:
        return self.public_host or self.host


class SipTransactionLayer(asyncio.DatagramProtocol):
    """See the module docstring. `start()` binds the socket; `close()` releases it."""

    def __init__(self, settings: UaSettings):
        self.settings = settings
        self.transport: asyncio.DatagramTransport | None = None
        self._responses: dict[tuple[str, str], tuple[bytes, float]] = {}  # non-INVITE final responses
        self._clients: dict[str, asyncio.Future[SipMessage]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._family = socket.AF_INET
        self._closing = False
        self.stats = {"received": 0, "malformed": 0, "retransmissions_absorbed": 0, "unsendable": 0,
                      "rebinds": 0}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.settings.host, self.settings.port))
        self.settings.port = self.transport.get_extra_info("sockname")[1]  # port 0 picks a free one
        self._family = self.transport.get_extra_info("socket").family

    def connection_lost(self, exc: Exception | None) -> None:
        """The last line of defence: if asyncio ever closes the SIP socket behind our back (it does
        when sendto raises a non-OSError), bind it again rather than answer nothing for ever."""
        if self._closing:
            return
        log.error("SIP socket closed unexpectedly; binding it again", extra={"error": repr(exc)})
        self.transport = None
        self.stats["rebinds"] += 1
        self._spawn(self._rebind())

    async def _rebind(self, attempts: int = 20) -> None:
        for _ in range(attempts):
            with contextlib.suppress(OSError):
                await self.start()
                return
            await asyncio.sleep(0.5)
        log.error("could not bind the SIP socket again", extra={"port": self.settings.port})

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            self.transport.close()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ receiving

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats["received"] += 1
        try:
            self._receive(data, addr[:2])
        except Exception:  # one bad datagram must never stop the agent
            log.exception("SIP message handling failed", extra={"source": f"{addr[0]}:{addr[1]}"})

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        if not data.strip(b"\r\n"):
            return  # CRLF keep-alive (RFC 5626)
        try:
            msg = parse_message(data)
        except SipParseError as e:
            self.stats["malformed"] += 1
            log.info("malformed SIP message", extra={"reason": e.reason, "source": f"{source[0]}:{source[1]}"})
            partial = e.partial
            if partial is not None and partial.is_request and partial.method != "ACK" and _can_answer(partial):
                self._stamp_via(partial, source)
                self._send_response(partial, source, 400, f"Bad Request ({_printable(e.reason)[:60]})")
            return
        if not msg.is_request:
            self._on_response(msg)
            return
        self._stamp_via(msg, source)
        method = msg.method
        assert method is not None
        if method not in ("INVITE", "ACK", "CANCEL") and self._absorb_retransmission(msg, source):
            return
        self.on_request(msg, source)

    def on_request(self, msg: SipMessage, source: tuple[str, int]) -> None:
        """A well-formed request that is not a retransmission; the UA overrides this."""
        self._send_response(msg, source, 501, "Not Implemented")

    def _stamp_via(self, msg: SipMessage, source: tuple[str, int]) -> None:
        """RFC 3261 §18.2.1 and RFC 3581: note where the request really came from in its top Via."""
        for i, (name, value) in enumerate(msg.headers):
            if name != "Via":
                continue
            entries = split_commas(value)
            try:
                via = parse_via(entries[0])
            except (SipParseError, IndexError):
                return
            sent_by, *params = entries[0].split(";")
            params = [p for p in params if p.strip().lower().partition("=")[0] != "received"]
            if "rport" in via.params:
                params = [f"rport={source[1]}" if p.strip().lower() == "rport" else p for p in params]
            if via.host != source[0] or "rport" in via.params:
                params.append(f"received={source[0]}")
            entries[0] = ";".join([sent_by, *params])
            msg.headers[i] = (name, ", ".join(entries))
            return

    def _absorb_retransmission(self, msg: SipMessage, source: tuple[str, int]) -> bool:
        cached = self._responses.get((msg.branch, msg.method or ""))
        if cached is None:
            return False
        self.stats["retransmissions_absorbed"] += 1
        self._send_raw(cached[0], self._response_address(msg, source))
        return True

    # ------------------------------------------------------------------ sending

    def _send_raw(self, data: bytes, address: tuple[str, int]) -> None:
        """Every datagram leaves here, after its peer-chosen address has been checked (address.py)."""
        if self.transport is None or self.transport.is_closing():
            return
        destination = usable_destination(address, self._family)
        if destination is None:
            self.stats["unsendable"] += 1
            log.info("SIP: not sending to an unusable address", extra={"address": repr(address)[:80]})
            return
        self.transport.sendto(data, destination)

    def _response_address(self, request: SipMessage, source: tuple[str, int]) -> tuple[str, int]:
        """RFC 3261 §18.2.2 / RFC 3581: the source address when rport or received says so."""
        try:
            via = parse_via(request.get("Via") or "")
        except SipParseError:
            return source
        if "rport" in via.params or via.host != source[0]:
            return source[0], (source[1] if "rport" in via.params else via.port or 5060)
        return via.host, via.port or 5060

    def _send_response(self, request: SipMessage, source: tuple[str, int], status: int, reason: str, *,
                       to_tag: str | None = None, headers: list[tuple[str, str]] | None = None,
                       body: bytes = b"") -> bytes:
        extra = [("Server", f"voice-sip/{__version__}"), *(headers or [])]
        if body:
            extra.append(("Content-Type", "application/sdp"))
        # RFC 3261 §8.2.6.2: a UAS adds a To tag to every response but 100 to a request that had none
        tag = None if "tag" in header_params(request.get("To") or "") else (to_tag or new_tag())
        data = build_response(request, status, reason, to_tag=tag, headers=extra, body=body).to_bytes()
        self._send_raw(data, self._response_address(request, source))
        if request.method not in ("INVITE", "ACK") and status >= 200:
            now = time.monotonic()
            self._responses = {k: v for k, v in self._responses.items() if v[1] > now}
            self._responses[(request.branch, request.method or "")] = (data, now + TRANSACTION_LINGER_S)
        return data

    async def request(self, msg: SipMessage, destination: tuple[str, int]) -> SipMessage | None:
        """Send a non-INVITE request as a client transaction (RFC 3261 §17.1.2): retransmit from T1
        doubling to T2 until a final response; None after 64*T1 without one."""
        loop = asyncio.get_running_loop()
        host, port = destination
        if usable_destination(destination, self._family) is None:  # a host name: resolve it off the loop
            try:
                infos = await loop.getaddrinfo(host, port, family=self._family, type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError, ValueError) as e:  # ValueError: a NUL in the name
                log.info("SIP: cannot resolve a request's destination", extra={"host": host[:80], "error": str(e)})
                return None
            host = infos[0][4][0]
        future: asyncio.Future[SipMessage] = loop.create_future()
        self._clients[msg.branch] = future
        data, interval = msg.to_bytes(), self.settings.t1_s
        deadline = loop.time() + 64 * self.settings.t1_s
        try:
            while loop.time() < deadline:
                self._send_raw(data, (host, port))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), min(interval, deadline - loop.time()))
                interval = min(interval * 2, self.settings.t2_s)
            return None
        finally:
            self._clients.pop(msg.branch, None)

    def _on_response(self, msg: SipMessage) -> None:
        future = self._clients.get(msg.branch)
        if future is not None and not future.done() and (msg.status or 0) >= 200:
            future.set_result(msg)


def _can_answer(msg: SipMessage) -> bool:
    """A 400 needs the headers a response copies; it goes to the source address when the top Via
    cannot be read (as with rport), so a broken Via still gets its answer."""
    return all(msg.get(name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))


def _printable(text: str) -> str:
    """A reason phrase built from a peer's bytes, safe to put on a status line (no CR/LF/controls)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
