"""The SIP user agent over UDP (RFC 3261): answers calls, keeps dialogs, hangs up, never crashes.

It is a UAS for INVITE (100 Trying at once, then the handler's answer; the 2xx is retransmitted
from T1 doubling to T2 until the ACK comes, and after 64*T1 without one the call is hung up),
ACK, BYE, CANCEL (200, then 487 for the INVITE), OPTIONS, INFO (DTMF) and re-INVITE (with or
without an offer). It is a UAC for BYE and REGISTER (`request()` retransmits until a final
response). Malformed requests get 400 when they say where to send it, known methods we do not
serve 405, unknown ones 501. Media and the voice server are the handler's business (gateway.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from voice.gateways.sip.dialog import Dialog
from voice.gateways.sip.dtmf import parse_info_body
from voice.gateways.sip.message import (
    SipMessage,
    SipParseError,
    header_params,
    name_addr_uri,
    new_tag,
    parse_uri,
)
from voice.gateways.sip.sdp import SdpError, SessionDescription, parse_sdp
from voice.gateways.sip.transaction import TRANSACTION_LINGER_S, SipTransactionLayer, UaSettings

__all__ = ["CallHandler", "InviteResult", "SipUserAgent", "UaSettings"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
# Standard methods we understand but do not serve: 405 (RFC 3261 §8.2.1); anything else is 501.
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PRACK", "UPDATE", "PUBLISH"})


@dataclass
class InviteResult:
    """The handler's answer to an INVITE: a status, the SDP body for a 2xx, extra headers
    (Retry-After on a 503)."""

    status: int
    reason: str
    sdp: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class CallHandler(Protocol):
    async def on_invite(self, dialog: Dialog, offer: SessionDescription | None) -> InviteResult: ...
    def on_confirmed(self, dialog: Dialog, answer: SessionDescription | None) -> None: ...
    async def on_reoffer(self, dialog: Dialog, offer: SessionDescription | None) -> str: ...
    def on_ended(self, dialog: Dialog, reason: str) -> None: ...
    def on_dtmf(self, dialog: Dialog, digit: str) -> None: ...


class _InviteTransaction:
    """One INVITE server transaction: the last response sent, and whether its ACK came."""

    def __init__(self, request: SipMessage, source: tuple[str, int], dialog: Dialog):
        self.request, self.source, self.dialog = request, source, dialog
        self.last: bytes | None = None
        self.final_status = 0
        self.cancelled = False
        self.acked = asyncio.Event()


class SipUserAgent(SipTransactionLayer):
    """See the module docstring. `start()` binds the socket; `close()` releases it."""

    def __init__(self, settings: UaSettings, handler: CallHandler):
        super().__init__(settings)
        self.handler = handler
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._invites: dict[str, _InviteTransaction] = {}              # INVITE branch -> transaction
        self._pending_2xx: dict[tuple[str, str, str], _InviteTransaction] = {}

    def on_request(self, msg: SipMessage, source: tuple[str, int]) -> None:
        handler = {"INVITE": self._on_invite, "ACK": self._on_ack, "CANCEL": self._on_cancel, "BYE": self._on_bye,
                   "OPTIONS": self._on_options, "INFO": self._on_info}.get(msg.method or "")
        if handler is not None:
            handler(msg, source)
        elif msg.method in KNOWN_METHODS:
            self._send_response(msg, source, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])
        else:
            self._send_response(msg, source, 501, "Not Implemented", headers=[("Allow", ALLOW)])

    @property
    def contact(self) -> str:
        return f"<sip:{self.settings.user}@{self.settings.advertised_host}:{self.settings.port}>"

    # ------------------------------------------------------------------ INVITE, ACK, CANCEL

    def _on_invite(self, msg: SipMessage, source: tuple[str, int]) -> None:
        tx = self._invites.get(msg.branch)
        if tx is not None:  # a retransmission: repeat what we last said
            self.stats["retransmissions_absorbed"] += 1
            if tx.last:
                self._send_raw(tx.last, self._response_address(msg, source))
            return
        if msg.get("Require"):
            self._send_response(msg, source, 420, "Bad Extension", headers=[("Unsupported", msg.get("Require") or "")])
            return
        try:
            offer = parse_sdp(msg.body.decode("utf-8", "replace")) if msg.body else None
        except SdpError as e:
            self._send_response(msg, source, 400, f"Bad Request (SDP: {str(e)[:50]})")
            return
        to_tag = header_params(msg.get("To") or "").get("tag")
        if to_tag:
            self._on_reinvite(msg, source, to_tag, offer)
            return
        if not _usable_target(msg):
            self._send_response(msg, source, 400, "Bad Request (Contact is not a SIP URI)")
            return
        dialog = Dialog.from_invite(msg, new_tag(), source, secrets.randbelow(2**31))
        tx = _InviteTransaction(msg, source, dialog)
        self._invites[msg.branch] = tx
        tx.last = self._send_response(msg, source, 100, "Trying")
        self._spawn(self._answer(tx, offer))

    async def _answer(self, tx: _InviteTransaction, offer: SessionDescription | None) -> None:
        dialog = tx.dialog
        if self.settings.ring_ms > 0:
            tx.last = self._send_response(tx.request, tx.source, 180, "Ringing", to_tag=dialog.local_tag)
            await asyncio.sleep(self.settings.ring_ms / 1000)
            if tx.cancelled:
                return  # hung up while ringing: no call was set up
        try:
            result = await self.handler.on_invite(dialog, offer)
        except Exception:
            log.exception("call setup failed", extra={"call_id": dialog.call_id})
            result = InviteResult(500, "Server Internal Error")
        if tx.cancelled:  # CANCEL won the race; 487 has been sent already
            self.handler.on_ended(dialog, "cancelled")
            return
        ok = 200 <= result.status < 300
        headers = [("Contact", self.contact), ("Allow", ALLOW), ("Supported", "")] if ok else []
        headers += result.headers
        body = (result.sdp or "").encode() if ok else b""
        tx.final_status = result.status
        tx.last = self._send_response(tx.request, tx.source, result.status, result.reason, to_tag=dialog.local_tag,
                                      headers=headers, body=body)
        if ok:
            self.dialogs[dialog.key] = dialog
            self._pending_2xx[dialog.key] = tx
        acked = await self._retransmit_until_ack(tx)
        if ok and not acked and dialog.state != "terminated":
            log.warning("no ACK for 2xx; hanging up", extra={"call_id": dialog.call_id})
            self.handler.on_ended(dialog, "no ACK")
            await self.hangup(dialog)

    async def _retransmit_until_ack(self, tx: _InviteTransaction) -> bool:
        """Timer G / 13.3.1.4: resend the final response until ACK; False after 64*T1."""
        interval, waited = self.settings.t1_s, 0.0
        try:
            while waited < 64 * self.settings.t1_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tx.acked.wait(), interval)
                    return True
                if tx.dialog.state == "terminated":
                    return False
                waited += interval
                interval = min(interval * 2, self.settings.t2_s)
                if tx.last:
                    self._send_raw(tx.last, self._response_address(tx.request, tx.source))
            return False
        finally:
            if self._pending_2xx.get(tx.dialog.key) is tx:
                del self._pending_2xx[tx.dialog.key]
            loop = asyncio.get_running_loop()
            loop.call_later(TRANSACTION_LINGER_S, self._invites.pop, tx.request.branch, None)

    def _on_ack(self, msg: SipMessage, source: tuple[str, int]) -> None:
        tx = self._invites.get(msg.branch)
        if tx is not None and tx.final_status >= 300:  # ACK for a non-2xx: same branch, hop by hop
            tx.acked.set()
            return
        dialog = self._find_dialog(msg)
        if dialog is None:
            return  # a stray ACK gets no response, ever
        pending = self._pending_2xx.get(dialog.key)
        if pending is None or msg.cseq[0] != pending.request.cseq[0]:
            return
        pending.acked.set()
        del self._pending_2xx[dialog.key]
        dialog.state = "confirmed" if dialog.state != "terminated" else dialog.state
        answer = None
        if msg.body:
            with contextlib.suppress(SdpError):
                answer = parse_sdp(msg.body.decode("utf-8", "replace"))
        self.handler.on_confirmed(dialog, answer)

    def _on_cancel(self, msg: SipMessage, source: tuple[str, int]) -> None:
        tx = self._invites.get(msg.branch)
        if tx is None:
            self._send_response(msg, source, 481, "Call/Transaction Does Not Exist")
            return
        self._send_response(msg, source, 200, "OK", to_tag=tx.dialog.local_tag)
        if tx.final_status or tx.cancelled:
            return  # already answered: CANCEL has no effect (RFC 3261 §9.2)
        tx.cancelled = True
        tx.final_status = 487
        tx.dialog.state = "terminated"
        tx.last = self._send_response(tx.request, tx.source, 487, "Request Terminated", to_tag=tx.dialog.local_tag)
        self._spawn(self._retransmit_until_ack(tx))

    # ------------------------------------------------------------------ in-dialog requests

    def _find_dialog(self, msg: SipMessage) -> Dialog | None:
        local = header_params(msg.get("To") or "").get("tag", "")
        remote = header_params(msg.get("From") or "").get("tag", "")
        return self.dialogs.get((msg.call_id, local, remote))

    def _in_dialog(self, msg: SipMessage, source: tuple[str, int]) -> Dialog | None:
        """The request's dialog after the CSeq check (RFC 3261 §12.2.2), or None when answered."""
        dialog = self._find_dialog(msg)
        if dialog is None:
            self._send_response(msg, source, 481, "Call/Transaction Does Not Exist")
            return None
        cseq = msg.cseq[0]
        if cseq <= dialog.remote_cseq:
            self._send_response(msg, source, 500, "Server Internal Error (CSeq out of order)")
            return None
        dialog.remote_cseq = cseq
        return dialog

    def _on_bye(self, msg: SipMessage, source: tuple[str, int]) -> None:
        dialog = self._in_dialog(msg, source)
        if dialog is None:
            return
        self._send_response(msg, source, 200, "OK")
        self._end(dialog, "bye")

    def _on_options(self, msg: SipMessage, source: tuple[str, int]) -> None:
        self._send_response(msg, source, 200, "OK", headers=[
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", ""), ("Contact", self.contact)])

    def _on_info(self, msg: SipMessage, source: tuple[str, int]) -> None:
        dialog = self._in_dialog(msg, source)
        if dialog is None:
            return
        digit = parse_info_body(msg.get("Content-Type") or "", msg.body)
        self._send_response(msg, source, 200, "OK")
        if digit:
            self.handler.on_dtmf(dialog, digit)

    def _on_reinvite(self, msg: SipMessage, source: tuple[str, int], to_tag: str,
                     offer: SessionDescription | None) -> None:
        if self._find_dialog(msg) is None:
            self._send_response(msg, source, 481, "Call/Transaction Does Not Exist")
            return
        # RFC 3261 §14.2: our 2xx to the previous INVITE is still unacknowledged
        pending = self._pending_2xx.get(self._find_dialog(msg).key)  # type: ignore[union-attr]
        if pending is not None and not pending.acked.is_set():
            self._send_response(msg, source, 500, "Server Internal Error", headers=[("Retry-After", "1")])
            return
        dialog = self._in_dialog(msg, source)
        if dialog is None:
            return
        tx = _InviteTransaction(msg, source, dialog)
        self._invites[msg.branch] = tx
        self._spawn(self._answer_reoffer(tx, offer))

    async def _answer_reoffer(self, tx: _InviteTransaction, offer: SessionDescription | None) -> None:
        dialog = tx.dialog
        try:
            sdp = await self.handler.on_reoffer(dialog, offer)
            status, reason, body = 200, "OK", sdp.encode()
        except SdpError as e:
            status, reason, body = 488, f"Not Acceptable Here ({str(e)[:40]})", b""
        tx.final_status = status
        headers = [("Contact", self.contact), ("Allow", ALLOW)] if status == 200 else []
        tx.last = self._send_response(tx.request, tx.source, status, reason, to_tag=dialog.local_tag,
                                      headers=headers, body=body)
        if status == 200:
            self._pending_2xx[dialog.key] = tx
        await self._retransmit_until_ack(tx)

    # ------------------------------------------------------------------ ending calls

    def _end(self, dialog: Dialog, reason: str) -> None:
        if dialog.state == "terminated":
            return
        dialog.state = "terminated"
        self.dialogs.pop(dialog.key, None)
        pending = self._pending_2xx.pop(dialog.key, None)
        if pending is not None:
            pending.acked.set()
        self.handler.on_ended(dialog, reason)

    async def hangup(self, dialog: Dialog) -> SipMessage | None:
        """Send BYE (after the 2xx's ACK, or its timeout: RFC 3261 §15); returns the final response."""
        pending = self._pending_2xx.get(dialog.key)
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.acked.wait(), 64 * self.settings.t1_s)
        dialog.state = "terminated"
        self.dialogs.pop(dialog.key, None)
        bye = dialog.build_request("BYE", self.settings.advertised_host, self.settings.port, self.contact)
        return await self.request(bye, dialog.next_destination())


def _usable_target(invite: SipMessage) -> bool:
    """RFC 3261 §8.1.1.8: an INVITE's Contact holds the SIP URI our BYE is sent to (the From URI when
    there is no Contact). Without one we could only write a BYE no one can parse."""
    try:
        parse_uri(name_addr_uri(invite.get("Contact") or invite.get("From") or ""))
    except SipParseError:
        return False
    return True
