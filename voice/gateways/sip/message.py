"""SIP messages (RFC 3261 §7, §20): parse from and build to bytes. Pure functions, no I/O.

`parse_message` is lenient where RFC 3261 asks receivers to be (compact header names, folded
lines, any case, LF-only line ends) and strict where a wrong guess would misroute a call: a
request without Via, From, To, Call-ID or a CSeq that matches its method is malformed. A
malformed message raises `SipParseError` carrying whatever headers were read, so the UA can
still answer 400 when it knows where to send it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
#: RFC 3261 §8.1.1.7: every branch we make starts with the magic cookie.
BRANCH_COOKIE = "z9hG4bK"
MAX_MESSAGE_BYTES = 65535

# RFC 3261 §7.3.3 compact forms, plus the common later ones.
_COMPACT = {"i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length", "c": "Content-Type",
            "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via", "r": "Refer-To", "o": "Event",
            "u": "Allow-Events"}
_CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length", "Content-Type",
    "Record-Route", "Route", "Allow", "Supported", "Accept", "User-Agent", "Server", "Expires",
    "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization", "Require",
    "Unsupported", "Reason", "Min-Expires", "Allow-Events", "Event", "Subject", "Content-Encoding",
    "Refer-To", "Retry-After", "Timestamp", "Warning")}
# Headers whose comma-separated values are separate entries (RFC 3261 §7.3.1).
_LIST_HEADERS = frozenset({"Via", "Record-Route", "Route", "Contact", "Allow", "Supported", "Require"})
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


def ascii_int(text: str, max_digits: int = 10) -> int | None:
    """`text` as a non-negative int when it is 1..max_digits ASCII digits, else None.

    Not `str.isdigit()`: that is true for "²" and "١", which int() then refuses or reads, and a
    peer's 5,000-digit number would make int() raise too (Python's 4300-digit limit).
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


class SipParseError(ValueError):
    """The bytes are not a well-formed SIP message. `partial` holds what was read, or None."""

    def __init__(self, reason: str, partial: SipMessage | None = None):
        super().__init__(reason)
        self.reason = reason
        self.partial = partial


def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`; unknown names keep their spelling."""
    low = name.strip().lower()
    return _COMPACT.get(low) or _CANONICAL.get(low) or name.strip()


@dataclass
class SipMessage:
    """A request (`method`, `uri`) or a response (`status`, `reason`). Headers keep their order."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (the first entry for list headers)."""
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, list headers split at top-level commas."""
        name = canonical_name(name)
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend(split_commas(value) if name in _LIST_HEADERS else [value])
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every value of a header with one value (appended when absent)."""
        name = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header; (0, "") when absent or malformed."""
        try:
            return parse_cseq(self.get("CSeq") or "")
        except SipParseError:
            return 0, ""

    @property
    def branch(self) -> str:
        via = self.get("Via")
        return header_params(via).get("branch", "") if via else ""

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is always (re)computed from the body."""
        if self.is_request:
            start = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            start = f"{SIP_VERSION} {self.status} {self.reason}"
        lines = [start] + [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


# ---------------------------------------------------------------- parsing


def parse_message(data: bytes) -> SipMessage:
    """Bytes of one datagram -> SipMessage. Raises SipParseError (see the module docstring)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large")
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if not sep:
        raise SipParseError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    lines = _unfold(text.replace("\r\n", "\n").split("\n"))
    msg = SipMessage()
    problem = _parse_start_line(lines[0], msg)
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            problem = problem or f"bad header line {line[:40]!r}"
            continue
        msg.headers.append((canonical_name(name), value.strip()))
    problem = problem or _check_body(msg, body) or (_check_request(msg) if msg.is_request else _check_response(msg))
    if problem:
        raise SipParseError(problem, msg)
    return msg


def _unfold(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and out:
            out[-1] += " " + line.strip()  # RFC 3261 §7.3.1: a folded line continues the header
        else:
            out.append(line)
    return out


def _parse_start_line(line: str, msg: SipMessage) -> str | None:
    parts = line.split(" ", 2)
    if parts[0] == SIP_VERSION:
        status = ascii_int(parts[1], 3) if len(parts) >= 2 and len(parts[1]) == 3 else None
        if status is None:
            return f"bad status line {line[:60]!r}"
        msg.status = status
        msg.reason = parts[2] if len(parts) == 3 else ""
        if not 100 <= msg.status <= 699:
            return f"status code out of range: {msg.status}"
        return None
    # Anything else is read as a request so that a broken one can still get its 400.
    msg.method = parts[0] if parts and _TOKEN.match(parts[0]) else "?"
    if len(parts) != 3 or parts[2] != SIP_VERSION or msg.method == "?" or ":" not in parts[1]:
        msg.uri = parts[1] if len(parts) > 1 else ""
        return f"bad request line {line[:60]!r}"
    msg.uri = parts[1]
    return None


def _check_body(msg: SipMessage, body: bytes) -> str | None:
    length = msg.get("Content-Length")
    if length is None:
        msg.body = body  # allowed over UDP: the datagram delimits the message
        return None
    n = ascii_int(length)
    if n is None:
        return f"bad Content-Length {length[:20]!r}"
    if n > len(body):
        return f"body shorter ({len(body)} bytes) than Content-Length {n}"
    msg.body = body[:n]  # RFC 3261 §18.3: extra bytes after the body are discarded
    return None


def _check_request(msg: SipMessage) -> str | None:
    for name in _REQUIRED:
        if not msg.get(name):
            return f"missing {name}"
    try:
        _, method = parse_cseq(msg.get("CSeq") or "")
    except SipParseError as e:
        return e.reason
    if method != msg.method:
        return f"CSeq method {method} does not match {msg.method}"
    max_forwards = msg.get("Max-Forwards")
    if max_forwards is not None and ascii_int(max_forwards) is None:
        return f"bad Max-Forwards {max_forwards[:20]!r}"
    try:
        parse_via(msg.get("Via") or "")
    except SipParseError as e:
        return e.reason  # a response needs a Via we can read; the 400 goes to the source address
    return None


def _check_response(msg: SipMessage) -> str | None:
    for name in ("Via", "Call-ID", "CSeq"):
        if not msg.get(name):
            return f"missing {name}"
    return None


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    number = ascii_int(parts[0]) if len(parts) == 2 else None
    if number is None or number >= 2**31 or not _TOKEN.match(parts[1]):  # RFC 3261 §8.1.1.5: < 2**31
        raise SipParseError(f"bad CSeq {value[:40]!r}")
    return number, parts[1]


def split_commas(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and <...>."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def header_params(value: str) -> dict[str, str]:
    """`;key=value` parameters after the name-addr / Via sent-by (keys lower-cased, "" when bare)."""
    rest = value[value.rindex(">") + 1:] if ">" in value else value
    params: dict[str, str] = {}
    for part in rest.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip().strip('"')
    return params


def name_addr_uri(value: str) -> str:
    """The URI inside a From/To/Contact/Route value: `"Bob" <sip:b@h>;tag=1` -> `sip:b@h`."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1:value.index(">")].strip()
    return value.split(";", 1)[0].strip()


@dataclass(frozen=True)
class SipUri:
    """The parts of a sip: URI we route on. `port` is None when the URI has none."""

    user: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def loose_route(self) -> bool:
        return "lr" in self.params


def parse_uri(uri: str) -> SipUri:
    """`sip:user@host:port;params` -> SipUri. Raises SipParseError for other schemes or a bad port."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips") or not rest.isprintable() or " " in rest:
        raise SipParseError(f"not a SIP URI: {uri[:60]!r}")  # whitespace would break a request line
    rest = rest.split("?", 1)[0]
    hostport, *param_parts = rest.split(";")
    params = {}
    for part in param_parts:
        key, _, val = part.partition("=")
        params[key.lower()] = val
    user, _, hostport = hostport.rpartition("@")
    if hostport.startswith("["):  # IPv6 reference
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = hostport.partition(":")
    return SipUri(user, _host(host, uri), _port(port_text, uri), params)


@dataclass(frozen=True)
class Via:
    """One Via entry: `SIP/2.0/UDP host:port;branch=...;rport`."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str]


def parse_via(value: str) -> Via:
    protocol, _, rest = value.strip().partition(" ")
    parts = protocol.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP":
        raise SipParseError(f"bad Via {value[:60]!r}")
    sent_by = rest.split(";", 1)[0].strip()
    if sent_by.startswith("["):
        host, _, port_text = sent_by[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = sent_by.partition(":")
    return Via(parts[2].upper(), _host(host, sent_by), _port(port_text.strip(), sent_by), header_params(rest))


def _host(host: str, where: str) -> str:
    if not host or any(ch.isspace() or ch in "<>\"" for ch in host):
        raise SipParseError(f"bad host in {where[:60]!r}")
    return host


def _port(text: str, where: str) -> int | None:
    """None when absent; 1..65535 or SipParseError (a port a peer asks us to send to)."""
    if not text:
        return None
    port = ascii_int(text, 5)
    if port is None or not 0 < port < 65536:
        raise SipParseError(f"bad port in {where[:60]!r}")
    return port


# ---------------------------------------------------------------- building


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def with_tag(value: str, tag: str) -> str:
    """A From/To value with `;tag=` added (unchanged when it already has one)."""
    if "tag" in header_params(value):
        return value
    return f"{value};tag={tag}"


def build_response(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
                   headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response to `request` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied, the To tag
    added when given, and Record-Route copied into dialog-creating responses (§12.1.1), so the
    peer's ACK and BYE go back through every proxy that asked to stay in the path."""
    resp = SipMessage(status=status, reason=reason)
    for via in request.get_all("Via"):
        resp.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is not None:
            resp.add(name, with_tag(value, to_tag) if name == "To" and to_tag and status != 100 else value)
    if 100 < status < 300:
        for route in request.get_all("Record-Route"):
            resp.add("Record-Route", route)
    for name, value in headers or []:
        resp.add(name, value)
    resp.body = body
    return resp


def build_request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> SipMessage:
    msg = SipMessage(method=method, uri=uri)
    for name, value in headers:
        msg.add(name, value)
    if msg.get("Max-Forwards") is None:
        msg.add("Max-Forwards", "70")
    msg.body = body
    return msg
