"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one G.711 audio stream.

We support PCMU and PCMA at 8 kHz with 20 ms packets, plus RFC 4733 telephone-event for DTMF.
`answer_offer` picks the offerer's most preferred codec we support, answers every m= line in
order (rejecting the ones we cannot use with port 0, as RFC 3264 §6 requires) and mirrors the
direction (sendonly is answered recvonly: a phone putting us on hold). Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voice.gateways.sip.message import ascii_int

#: Codecs by preference; name -> static payload type (RFC 3551 table 4).
SUPPORTED_CODECS: dict[str, int] = {"PCMU": 0, "PCMA": 8}
STATIC_PAYLOADS: dict[int, tuple[str, int]] = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
TELEPHONE_EVENT = "telephone-event"
DEFAULT_DTMF_PT = 101
PTIME_MS = 20
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(ValueError):
    """Unparseable SDP, or an offer with nothing we can accept (the UA answers 488)."""


@dataclass
class MediaDescription:
    """One m= section. `formats` are payload types as strings, in the offerer's order."""

    media: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)   # pt -> (encoding, clock Hz)
    fmtp: dict[int, str] = field(default_factory=dict)
    connection: str | None = None
    direction: str | None = None
    ptime_ms: int | None = None

    def codec_of(self, pt: int) -> tuple[str, int] | None:
        """(encoding name upper-cased, clock Hz) of a payload type; static types need no rtpmap."""
        if pt in self.rtpmap:
            name, clock = self.rtpmap[pt]
            return name.upper() if name.lower() != TELEPHONE_EVENT else TELEPHONE_EVENT, clock
        return STATIC_PAYLOADS.get(pt)


@dataclass
class SessionDescription:
    origin: str = ""
    connection: str | None = None
    direction: str = "sendrecv"
    media: list[MediaDescription] = field(default_factory=list)


def parse_sdp(text: str) -> SessionDescription:
    """SDP text -> SessionDescription. Raises SdpError when it is not SDP."""
    sdp = SessionDescription()
    current: MediaDescription | None = None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP must start with v=")
    for line in lines:
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            raise SdpError(f"bad SDP line {line[:40]!r}")
        if kind == "o":
            sdp.origin = value
        elif kind == "c":
            address = _connection_address(value)
            if current is None:
                sdp.connection = address
            else:
                current.connection = address
        elif kind == "m":
            current = _media_line(value)
            sdp.media.append(current)
        elif kind == "a":
            _attribute(value, current, sdp)
    return sdp


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    return parts[2].split("/", 1)[0]


def _media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line {value!r}")
    port = ascii_int(parts[1].split("/", 1)[0], 5)
    if port is None or port > 65535:
        raise SdpError(f"bad port in m= line {value[:60]!r}")
    return MediaDescription(parts[0], port, parts[2], parts[3:])


def _attribute(value: str, media: MediaDescription | None, sdp: SessionDescription) -> None:
    name, _, arg = value.partition(":")
    if name in _DIRECTIONS:
        if media is None:
            sdp.direction = name
        else:
            media.direction = name
        return
    if media is None:
        return
    if name == "rtpmap":
        pt_text, _, encoding = arg.partition(" ")
        enc_parts = encoding.strip().split("/")
        pt, clock_hz = ascii_int(pt_text, 3), ascii_int(enc_parts[1]) if len(enc_parts) >= 2 else None
        if pt is not None and clock_hz is not None:
            media.rtpmap[pt] = (enc_parts[0], clock_hz)
    elif name == "fmtp":
        pt_text, _, params = arg.partition(" ")
        pt = ascii_int(pt_text, 3)
        if pt is not None:
            media.fmtp[pt] = params.strip()
    elif name == "ptime" and (ptime_ms := ascii_int(arg.strip(), 5)) is not None:
        media.ptime_ms = ptime_ms


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed on for the audio stream."""

    codec: str                 # "PCMU" or "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    direction: str             # our direction: "sendrecv", "recvonly" (we are on hold)...

    @property
    def we_send(self) -> bool:
        return self.direction in ("sendrecv", "sendonly") and self.remote_host not in ("0.0.0.0", "::")

    @property
    def we_receive(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def answer_offer(offer: SessionDescription, *, local_host: str, local_port: int, session_id: int, version: int,
                 codecs: tuple[str, ...] = tuple(SUPPORTED_CODECS)) -> tuple[Negotiated, str]:
    """RFC 3264 answer: (what was agreed, answer SDP text). Raises SdpError when no audio stream
    offers a codec in `codecs` (the caller answers 488 Not Acceptable Here)."""
    chosen: tuple[int, MediaDescription, str, int, int | None] | None = None
    for index, media in enumerate(offer.media):
        if chosen is not None or media.media != "audio" or media.port == 0 or "RTP/AVP" not in media.proto:
            continue
        picked = _pick_codec(media, codecs)
        if picked is not None:
            chosen = (index, media, picked[0], picked[1], _dtmf_type(media))
    if chosen is None:
        raise SdpError("no audio stream with PCMU or PCMA in the offer")
    index, media, codec, pt, dtmf_pt = chosen
    host = media.connection or offer.connection
    if host is None:
        raise SdpError("no c= line for the audio stream")
    offered = media.direction or offer.direction
    direction = _ANSWER_DIRECTION.get(offered, "sendrecv")
    agreed = Negotiated(codec, pt, dtmf_pt, host, media.port, direction)
    sections = []
    for i, m in enumerate(offer.media):
        if i == index:
            sections.append(_audio_section(local_port, pt, codec, dtmf_pt, direction, proto=m.proto))
        else:  # a stream we do not take: same m= line with port 0 and its first format
            sections.append(f"m={m.media} 0 {m.proto} {m.formats[0] if m.formats else '0'}\r\n")
    return agreed, session_header(local_host, session_id, version) + "".join(sections)


def _pick_codec(media: MediaDescription, codecs: tuple[str, ...]) -> tuple[str, int] | None:
    for fmt in media.formats:  # the offerer's order is its preference
        pt = ascii_int(fmt, 3)
        codec = media.codec_of(pt) if pt is not None else None
        if codec is not None and codec[0] in codecs and codec[1] == 8000:
            return codec[0], pt
    return None


def _dtmf_type(media: MediaDescription) -> int | None:
    for fmt in media.formats:
        pt = ascii_int(fmt, 3)
        if pt is not None and media.codec_of(pt) == (TELEPHONE_EVENT, 8000):
            return pt
    return None


def session_header(local_host: str, session_id: int, version: int) -> str:
    ip = "IP6" if ":" in local_host else "IP4"
    return (f"v=0\r\no=voice {session_id} {version} IN {ip} {local_host}\r\ns=voice\r\n"
            f"c=IN {ip} {local_host}\r\nt=0 0\r\n")


def _audio_section(port: int, pt: int, codec: str, dtmf_pt: int | None, direction: str,
                   proto: str = "RTP/AVP") -> str:
    formats = f"{pt} {dtmf_pt}" if dtmf_pt is not None else str(pt)
    lines = [f"m=audio {port} {proto} {formats}", f"a=rtpmap:{pt} {codec}/8000"]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} {TELEPHONE_EVENT}/8000", f"a=fmtp:{dtmf_pt} 0-15"]
    lines += [f"a=ptime:{PTIME_MS}", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


def build_offer(*, local_host: str, local_port: int, session_id: int, version: int,
                codecs: tuple[str, ...] = tuple(SUPPORTED_CODECS), dtmf_pt: int = DEFAULT_DTMF_PT) -> str:
    """An offer with every codec we support (for a re-INVITE that came without SDP)."""
    pts = [SUPPORTED_CODECS[c] for c in codecs]
    lines = [f"m=audio {local_port} RTP/AVP {' '.join(map(str, pts))} {dtmf_pt}"]
    lines += [f"a=rtpmap:{pt} {c}/8000" for c, pt in zip(codecs, pts, strict=True)]
    lines += [f"a=rtpmap:{dtmf_pt} {TELEPHONE_EVENT}/8000", f"a=fmtp:{dtmf_pt} 0-15", f"a=ptime:{PTIME_MS}",
              "a=sendrecv"]
    return session_header(local_host, session_id, version) + "\r\n".join(lines) + "\r\n"


def accept_answer(answer: SessionDescription, offer_codecs: tuple[str, ...] = tuple(SUPPORTED_CODECS)) -> Negotiated:
    """The peer's answer to our offer (re-INVITE without SDP: the answer comes in the ACK)."""
    for media in answer.media:
        if media.media == "audio" and media.port:
            picked = _pick_codec(media, offer_codecs)
            host = media.connection or answer.connection
            if picked and host:
                direction = _ANSWER_DIRECTION.get(media.direction or answer.direction, "sendrecv")
                return Negotiated(picked[0], picked[1], _dtmf_type(media), host, media.port, direction)
    raise SdpError("the answer has no usable audio stream")
