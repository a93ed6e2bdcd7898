"""Registration with a SIP registrar (RFC 3261 §10) with digest authentication (RFC 2617 / 7616).

The gateway registers its Contact under an address of record (`sip:agent@pbx.example`), so the
registrar (a PBX, kamailio, a SIP trunk) routes calls for that AOR to it. It refreshes before the
granted expiry, retries after failures, and unregisters (Expires: 0) on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from voice.gateways.sip.digest import DigestError, authorization, parse_challenge
from voice.gateways.sip.message import (
    SipMessage,
    SipParseError,
    ascii_int,
    build_request,
    header_params,
    new_branch,
    new_tag,
    parse_uri,
)
from voice.gateways.sip.ua import SipUserAgent

log = logging.getLogger(__name__)


@dataclass
class RegistrationSettings:
    aor: str                         # sip:user@registrar[:port]
    password: str | None = None
    username: str | None = None      # auth user; defaults to the AOR's user part
    expires_s: int = 300
    retry_s: float = 30.0


class Registration:
    """Keeps one binding alive; `run()` until cancelled, then `unregister()`."""

    def __init__(self, ua: SipUserAgent, settings: RegistrationSettings):
        self.ua = ua
        self.settings = settings
        uri = parse_uri(settings.aor)
        self.user = uri.user
        self.registrar = (uri.host, uri.port or 5060)
        self.request_uri = f"sip:{uri.host}" + (f":{uri.port}" if uri.port else "")
        self.call_id = secrets.token_hex(12)
        self.tag = new_tag()
        self.cseq = 0
        self.registered = asyncio.Event()
        self.granted_s = 0
        self.last_status = 0

    async def run(self) -> None:
        while True:
            try:
                granted = await self.register(self.settings.expires_s)
            except (OSError, SipParseError, DigestError) as e:
                log.warning("registration failed", extra={"aor": self.settings.aor, "error": str(e)})
                granted = None
            if granted:
                await asyncio.sleep(max(granted * 0.8, granted - 30) if granted > 60 else granted / 2)
            else:
                await asyncio.sleep(self.settings.retry_s)

    async def unregister(self) -> None:
        if self.registered.is_set():
            await self.register(0)

    async def register(self, expires_s: int) -> int | None:
        """One REGISTER exchange (answering one challenge); the granted expiry in s, or None."""
        response = await self.ua.request(self._request(expires_s, None), self.registrar)
        for _ in range(2):  # a stale nonce may be challenged once more
            if response is None or response.status not in (401, 407):
                break
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            if self.settings.password is None:
                raise DigestError(f"registrar wants credentials ({response.status}) and no --password was given")
            challenge = parse_challenge(response.get(header) or "")
            credentials = authorization(challenge, username=self.settings.username or self.user,
                                        password=self.settings.password, method="REGISTER", uri=self.request_uri)
            auth_header = "Authorization" if response.status == 401 else "Proxy-Authorization"
            response = await self.ua.request(self._request(expires_s, (auth_header, credentials)), self.registrar)
        self.last_status = response.status if response is not None and response.status else 0
        if response is None or not 200 <= (response.status or 0) < 300:
            log.warning("REGISTER refused", extra={"aor": self.settings.aor, "status": self.last_status,
                                                   "reason": response.reason if response else "timeout"})
            self.registered.clear()
            return None
        if expires_s == 0:
            self.registered.clear()
            return 0
        self.granted_s = self._granted(response, expires_s)
        self.registered.set()
        log.info("registered", extra={"aor": self.settings.aor, "expires_s": self.granted_s})
        return self.granted_s

    def _request(self, expires_s: int, auth: tuple[str, str] | None) -> SipMessage:
        self.cseq += 1
        ua = self.ua.settings
        headers = [
            ("Via", f"SIP/2.0/UDP {ua.advertised_host}:{ua.port};branch={new_branch()};rport"),
            ("From", f"<{self.settings.aor}>;tag={self.tag}"),
            ("To", f"<{self.settings.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<sip:{self.user}@{ua.advertised_host}:{ua.port}>"),
            ("Expires", str(expires_s)),
            ("User-Agent", "voice-sip"),
        ]
        if auth:
            headers.append(auth)
        return build_request("REGISTER", self.request_uri, headers)

    def _granted(self, response: SipMessage, asked_s: int) -> int:
        mine = f"{self.ua.settings.advertised_host}:{self.ua.settings.port}"
        for contact in response.get_all("Contact"):
            expires = ascii_int(header_params(contact).get("expires", ""))
            if mine in contact and expires is not None:
                return expires
        header = ascii_int(response.get("Expires") or "")
        return header if header is not None else asked_s
