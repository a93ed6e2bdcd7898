"""The SIP gateway: the UA's calls, each with its RTP media and its voice-server session.

Call setup: INVITE -> bind an RTP port -> SDP answer -> open the server session (HELLO/READY) ->
200 OK. A server that cannot be reached, or refuses the session (SERVER_BUSY...), gets the caller
a 503 with Retry-After, not a silent call, and every resource taken so far is released. The
session is opened before the 200 so that a refusal can still be a 503; in exchange, calls that
hold a session without an ACK are capped (`max_unconfirmed_calls`) and released at Timer H. Teardown from
any side ends all three: the phone's BYE or CANCEL, the server ending its session (we send BYE),
no RTP for `rtp_timeout_s` (we send BYE), the gateway stopping (BYE to every call).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from voice.client import ClientError
from voice.gateways.sip.bridge import BridgeSettings, CallBridge
from voice.gateways.sip.call import CallMedia
from voice.gateways.sip.dialog import Dialog
from voice.gateways.sip.register import Registration, RegistrationSettings
from voice.gateways.sip.sdp import SdpError, SessionDescription, accept_answer, answer_offer, build_offer
from voice.gateways.sip.ua import InviteResult, SipUserAgent, UaSettings
from voice.protocol import ErrorCode

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 asks the caller to wait before trying again
_RETRY_HINT = re.compile(r"retry_after_ms=(\d{1,9})")


@dataclass
class GatewaySettings:
    ua: UaSettings = field(default_factory=UaSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    rtp_ports: range = range(40000, 40101)
    rtp_timeout_s: float = 30.0
    max_calls: int = 50
    max_unconfirmed_calls: int = 8   # calls set up or answered but not yet ACKed; more get 503
    event_log: Path | None = None
    registration: RegistrationSettings | None = None


@dataclass
class ActiveCall:
    dialog: Dialog
    media: CallMedia
    bridge: CallBridge
    invite_at_s: float
    answered_at_s: float = 0.0
    ended: bool = False
    task: asyncio.Task | None = None


class _Refused(Exception):
    """Call setup stopped; `result` is what the caller is answered."""

    def __init__(self, result: InviteResult):
        super().__init__(result.reason)
        self.result = result


def _unavailable(why: str, retry_after_s: int = RETRY_AFTER_S) -> InviteResult:
    """503 with Retry-After (RFC 3261 §21.5.4): the caller, or its proxy, may try again later."""
    return InviteResult(503, f"Service Unavailable ({why})", headers=[("Retry-After", str(retry_after_s))])


def _retry_hint_s(message: str) -> int:
    """The server's own retry hint in a SERVER_BUSY text ("retry_after_ms=10000"), else ours."""
    hint = _RETRY_HINT.search(message)
    return max(1, math.ceil(int(hint[1]) / 1000)) if hint else RETRY_AFTER_S


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class EventLog:
    """One JSON object per line: what happened in each call (transcripts, agent text, stats)."""

    def __init__(self, path: Path | None):
        self._file: TextIO | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def write(self, call_id: str, event: dict[str, Any]) -> None:
        log.info("call event", extra={"call_id": call_id, "event": event.get("type"),
                                      "text": event.get("text", "")})
        if self._file is not None:
            self._file.write(json.dumps({"call_id": call_id, "t": round(time.time(), 3), **event}) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class SipGateway:
    """Implements the UA's CallHandler; `start()`, then `stop()` on shutdown."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.ua = SipUserAgent(settings.ua, self)
        self.calls: dict[tuple[str, str, str], ActiveCall] = {}
        self.events = EventLog(settings.event_log)
        self.registration = Registration(self.ua, settings.registration) if settings.registration else None
        self._background: set[asyncio.Task] = set()
        #: Calls that hold a server session but have no ACK yet: being set up, or answered and
        #: waiting. Capped, so INVITEs that never ACK cannot hold every server session (see
        #: docs/telephony.md, "Calls that never ACK").
        self._unconfirmed: set[tuple[str, str, str]] = set()

    async def start(self) -> None:
        await self.ua.start()
        if self.registration is not None:
            self._spawn(self.registration.run())

    async def stop(self) -> None:
        await asyncio.gather(*(self._hang_up(call, "gateway stopping") for call in list(self.calls.values())),
                             return_exceptions=True)
        if self.registration is not None:
            try:
                await asyncio.wait_for(self.registration.unregister(), 5)
            except (TimeoutError, OSError) as e:
                log.warning("unregister failed", extra={"error": str(e)})
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.ua.close()
        self.events.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------------ CallHandler

    async def on_invite(self, dialog: Dialog, offer: SessionDescription | None) -> InviteResult:
        t0 = time.monotonic()
        if len(self.calls) >= self.settings.max_calls:
            return InviteResult(486, "Busy Here")
        if len(self._unconfirmed) >= self.settings.max_unconfirmed_calls:
            log.warning("too many calls waiting for their ACK", extra={"call_id": dialog.call_id})
            return _unavailable("too many calls being set up")
        bridge = CallBridge(self.settings.bridge, dialog.info,
                            lambda event: self.events.write(dialog.call_id, event))
        rate = self.settings.bridge.rate_hz
        media = CallMedia(bridge.audio_from_phone, bridge.dtmf, server_in_hz=rate, server_out_hz=rate,
                          rtp_timeout_s=self.settings.rtp_timeout_s)
        self._unconfirmed.add(dialog.key)  # holds a server session until the ACK (or Timer H)
        try:
            sdp = await self._set_up(dialog, offer, media, bridge)
        except _Refused as refused:
            self._unconfirmed.discard(dialog.key)
            await media.close()
            await bridge.close()
            return refused.result
        except BaseException:
            self._unconfirmed.discard(dialog.key)
            await media.close()
            await bridge.close()
            raise
        bridge.attach(media)
        call = ActiveCall(dialog, media, bridge, t0, answered_at_s=time.monotonic())
        media.on_timeout = lambda: self._spawn(self._hang_up(call, "rtp timeout"))
        media.on_segment_sent = lambda ms: self.events.write(dialog.call_id, {"type": "agent_audio_sent",
                                                                              "ms": ms})
        self.calls[dialog.key] = call
        if offer is not None:
            media.start()
        call.task = self._spawn(self._run(call))
        self.events.write(dialog.call_id, {"type": "call_started", **dialog.info,
                                           "codec": media.negotiated.codec if media.negotiated else None,
                                           "setup_ms": round((call.answered_at_s - t0) * 1000, 1)})
        return InviteResult(200, "OK", sdp)

    async def _set_up(self, dialog: Dialog, offer: SessionDescription | None, media: CallMedia,
                      bridge: CallBridge) -> str:
        """RTP port, SDP answer, server session, in that order; the SDP to answer with. Raises
        _Refused with the caller's answer; the caller releases the media and the bridge."""
        host = self.settings.ua.advertised_host
        try:
            await media.open(self.settings.ua.host, self.settings.rtp_ports)
        except OSError as e:
            log.warning("no RTP port", extra={"error": str(e)})
            raise _Refused(_unavailable("no RTP port")) from None
        dialog.sdp_version = 1
        try:
            if offer is None:  # delayed offer: ours goes in the 200, the answer comes in the ACK
                return await self._connect(dialog, bridge, build_offer(
                    local_host=host, local_port=media.port, session_id=dialog.session_id,
                    version=dialog.sdp_version))
            negotiated, sdp = answer_offer(offer, local_host=host, local_port=media.port,
                                           session_id=dialog.session_id, version=dialog.sdp_version)
        except SdpError as e:
            raise _Refused(InviteResult(488, f"Not Acceptable Here ({str(e)[:40]})")) from None
        media.apply(negotiated)
        return await self._connect(dialog, bridge, sdp)

    async def _connect(self, dialog: Dialog, bridge: CallBridge, sdp: str) -> str:
        try:
            await bridge.connect()
        except ClientError as e:  # the server refused: SERVER_BUSY, SHUTTING_DOWN, AUTH_FAILED...
            log.warning("voice server refused the call", extra={"code": e.code, "error": e.message,
                                                                 "call_id": dialog.call_id})
            raise _Refused(_unavailable(f"voice server: {_code_name(e.code)}", _retry_hint_s(e.message))) from None
        except (OSError, TimeoutError) as e:
            log.warning("voice server unavailable", extra={"error": str(e), "call_id": dialog.call_id})
            raise _Refused(_unavailable("voice server")) from None
        return sdp

    def on_confirmed(self, dialog: Dialog, answer: SessionDescription | None) -> None:
        self._unconfirmed.discard(dialog.key)
        call = self.calls.get(dialog.key)
        if call is None or answer is None or call.media.negotiated is not None:
            return
        try:
            call.media.apply(accept_answer(answer))
            call.media.start()
        except SdpError as e:
            log.warning("unusable answer in ACK", extra={"error": str(e)})
            self._spawn(self._hang_up(call, "bad answer in ACK"))

    async def on_reoffer(self, dialog: Dialog, offer: SessionDescription | None) -> str:
        call = self.calls.get(dialog.key)
        if call is None:
            raise SdpError("call is gone")
        dialog.sdp_version += 1
        host = self.settings.ua.advertised_host
        if offer is None:
            call.media.negotiated = None  # the answer in the ACK decides again
            return build_offer(local_host=host, local_port=call.media.port, session_id=dialog.session_id,
                               version=dialog.sdp_version)
        negotiated, sdp = answer_offer(offer, local_host=host, local_port=call.media.port,
                                       session_id=dialog.session_id, version=dialog.sdp_version)
        call.media.apply(negotiated)
        self.events.write(dialog.call_id, {"type": "reinvite", "direction": negotiated.direction})
        return sdp

    def on_ended(self, dialog: Dialog, reason: str) -> None:
        self._unconfirmed.discard(dialog.key)
        call = self.calls.get(dialog.key)
        if call is not None:
            self._spawn(self._finish(call, reason))

    def on_dtmf(self, dialog: Dialog, digit: str) -> None:
        call = self.calls.get(dialog.key)
        if call is not None:
            call.bridge.dtmf(digit)

    # ------------------------------------------------------------------ ending

    async def _run(self, call: ActiveCall) -> None:
        reason = await call.bridge.run()
        if not call.ended:  # the server left first: tell the phone
            await self._hang_up(call, reason)

    async def _hang_up(self, call: ActiveCall, reason: str) -> None:
        if call.ended:
            return
        # the phone first: its BYE must not wait on a slow close of the server link
        bye = asyncio.get_running_loop().create_task(self.ua.hangup(call.dialog))
        await self._finish(call, reason)
        response = await bye
        log.info("sent BYE", extra={"call_id": call.dialog.call_id,
                                    "status": response.status if response else "timeout"})

    async def _finish(self, call: ActiveCall, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        self.calls.pop(call.dialog.key, None)
        media = call.media
        await media.close()
        jb = media.jitter.stats
        self.events.write(call.dialog.call_id, {
            "type": "call_ended", "reason": reason, "duration_s": round(time.monotonic() - call.answered_at_s, 2),
            "rtp_in": media.stats.packets_in, "rtp_out": media.stats.packets_out,
            "lost_frames": jb.lost_frames, "late": jb.late, "underruns": jb.underruns,
            "jitter_ms": round(media.jitter.jitter_ms, 2), "pacer_skipped": media.pacer.skipped,
            "pacer_max_late_ms": round(media.pacer.max_late_s * 1000, 2), "dtmf": media.stats.dtmf_digits,
            "agent_text": " ".join(call.bridge.agent_texts)})
        await call.bridge.close()  # last: a slow close handshake with the server delays nothing else
