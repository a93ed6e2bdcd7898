"""A SIP dialog as the UAS sees it (RFC 3261 §12): identifiers, route set, CSeqs, and the
requests we send inside it (BYE). Pure state; the UA does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voice.gateways.sip.message import (
    SipMessage,
    SipParseError,
    build_request,
    header_params,
    name_addr_uri,
    new_branch,
    parse_uri,
    with_tag,
)


@dataclass
class Dialog:
    """Created by an incoming INVITE. `local_*` is us (the To side), `remote_*` the caller."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_header: str          # the INVITE's To value, without our tag
    remote_header: str         # the INVITE's From value (with the caller's tag)
    remote_target: str         # the caller's Contact URI: where in-dialog requests go
    route_set: list[str]       # Record-Route entries of the INVITE, in order (§12.1.1)
    remote_cseq: int
    source: tuple[str, int]    # where the INVITE came from (the phone, or the last proxy)
    local_cseq: int = 0
    state: str = "early"       # early -> confirmed (ACK seen) -> terminated
    sdp_version: int = 0
    session_id: int = 0
    info: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.call_id, self.local_tag, self.remote_tag

    @classmethod
    def from_invite(cls, invite: SipMessage, local_tag: str, source: tuple[str, int], session_id: int) -> Dialog:
        from_value = invite.get("From") or ""
        contact = invite.get("Contact")
        target = name_addr_uri(contact) if contact else name_addr_uri(from_value)
        return cls(
            call_id=invite.call_id, local_tag=local_tag, remote_tag=header_params(from_value).get("tag", ""),
            local_header=invite.get("To") or "", remote_header=from_value, remote_target=target,
            route_set=invite.get_all("Record-Route"), remote_cseq=invite.cseq[0], source=source,
            session_id=session_id,
            info={"from": name_addr_uri(from_value), "to": name_addr_uri(invite.get("To") or ""),
                  "uri": invite.uri or ""},
        )

    def next_destination(self) -> tuple[str, int]:
        """Host and port the next in-dialog request is sent to: the first route, else the target."""
        first = name_addr_uri(self.route_set[0]) if self.route_set else self.remote_target
        try:
            uri = parse_uri(first)
        except SipParseError:
            return self.source  # a target we cannot read: answer where the call came from
        return uri.host, uri.port or 5060

    def build_request(self, method: str, via_host: str, via_port: int, contact: str,
                      extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
        """A new in-dialog request (§12.2.1.1) with loose or strict routing per the first route."""
        self.local_cseq += 1
        uri, routes = self.remote_target, list(self.route_set)
        if routes and not _is_loose(routes[0]):  # strict router: it takes the place of the R-URI
            uri = name_addr_uri(routes[0])
            routes = [*routes[1:], f"<{self.remote_target}>"]
        headers = [("Via", f"SIP/2.0/UDP {via_host}:{via_port};branch={new_branch()};rport")]
        headers += [("Route", r) for r in routes]
        headers += [
            ("From", with_tag(self.local_header, self.local_tag)),
            ("To", self.remote_header),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            ("Contact", contact),
            *(extra or []),
        ]
        return build_request(method, uri, headers, body)


def _is_loose(route: str) -> bool:
    try:
        return parse_uri(name_addr_uri(route)).loose_route
    except SipParseError:
        return True
