"""Hostile input for bench/fuzz.py: protocol frames and SIP datagrams, mutated from valid ones.

Everything is drawn from one `random.Random`, so a seed replays a run. Protocol frames start from
the golden vectors (tests/golden/) and the frames a real session sends; SIP datagrams from valid
INVITE/OPTIONS/BYE/REGISTER/CANCEL/ACK/INFO requests, plus torture cases in the spirit of RFC 4475
(written for this gateway, not copied from the RFC).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import ClassVar

import numpy as np

from voice.protocol import Frame, MessageType, encode_frame

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"

# ---------------------------------------------------------------------- JSON a peer should never send

def _deep(rng: random.Random) -> str:
    depth = rng.choice([33, 100, 1000, 5000, 20000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + "0" + closer * depth


HOSTILE_VALUES = [
    lambda r: _deep(r), lambda r: '"\\ud800"', lambda r: '"\\udfff\\ud800"', lambda r: "1e999", lambda r: "-1e400",
    lambda r: "NaN", lambda r: "Infinity", lambda r: str(10 ** r.choice([20, 300, 4299])), lambda r: "9" * 5000,
    lambda r: json.dumps("x" * r.choice([1000, 30000])), lambda r: '"\\u0000\\u202e\\ufeff"', lambda r: "null",
    lambda r: "true", lambda r: "[]", lambda r: "{}", lambda r: '"48000"', lambda r: "-1", lambda r: "0.5",
    lambda r: '{"type":"text"}', lambda r: json.dumps({"vad": {"threshold": "high"}}),
]


def hostile_json(rng: random.Random, template: dict) -> bytes:
    """`template` with one field's value (or the whole text) replaced by something hostile."""
    how = rng.random()
    if how < 0.1:
        return rng.choice([b"\xff\xfe{", b'{"type": "text", "text": "\xed\xa0\x80"}', b"{", b"", b"[]", b"\x00"])
    if how < 0.2:
        return HOSTILE_VALUES[rng.randrange(len(HOSTILE_VALUES))](rng).encode()
    data = dict(template)
    key = rng.choice([*data, "options", "extra"])
    text = json.dumps(data)
    value = HOSTILE_VALUES[rng.randrange(len(HOSTILE_VALUES))](rng)
    data[key] = "__HOLE__"
    return json.dumps(data).replace('"__HOLE__"', value, 1).encode() if key in data else text.encode()


# ---------------------------------------------------------------------- protocol frames

CONTROLS = [{"type": "interrupt"}, {"type": "playback_mark", "played_samples": 960, "segment": 0},
            {"type": "end_of_input"}, {"type": "config", "options": {"language": "en"}},
            {"type": "text", "text": "What time is it?"}, {"type": "dtmf", "digits": "12#"}]
HELLOS = [{"codec": "pcm16", "sample_rate": 16000}, {"codec": "pcm16", "sample_rate": 8000},
          {"codec": "pcm16", "sample_rate": 48000}, {"codec": "opus", "sample_rate": 48000}]


def hello_json(rng: random.Random) -> dict:
    fmt = rng.choice(HELLOS)
    return {"version": 1, "input": fmt, "output": {"codec": "pcm16", "sample_rate": 16000},
            "client": "fuzz/1", "options": {}}


class FrameFuzzer:
    """Frames for one protocol session: mostly what a real client sends (so the session lives and
    every later frame is parsed by it), one in `hostile_share` mutated or hostile."""

    def __init__(self, rng: random.Random, hostile_share: float = 0.05):
        self.rng, self.hostile_share = rng, hostile_share
        index = json.loads((GOLDEN / "index.json").read_text())
        self.golden = [(GOLDEN / v["file"]).read_bytes() for v in index["vectors"]]
        self.seq = 0
        self.opus_packets = self._opus_packets()

    @staticmethod
    def _opus_packets() -> list[bytes]:
        from voice.codecs.opus import OpusEncoder

        encoder = OpusEncoder(48000, frame_ms=20)
        noise = np.random.default_rng(0).normal(0, 30, 960 * 20).astype(np.int16)
        return [encoder.encode(noise[i:i + 960]) for i in range(0, len(noise), 960)]

    def frame(self, kind: int, payload: bytes, flags: int = 0) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return encode_frame(Frame(kind, flags, self.seq, self.seq * 320, payload))

    def hello(self) -> tuple[bytes, dict]:
        hello = hello_json(self.rng)
        return self.frame(MessageType.HELLO, json.dumps(hello).encode()), hello["input"]

    def audio(self, fmt: dict) -> bytes:
        if fmt["codec"] == "opus":
            return self.frame(MessageType.AUDIO, self.rng.choice(self.opus_packets))
        n = fmt["sample_rate"] // 50
        quiet = (np.random.default_rng(self.rng.randrange(1 << 30)).normal(0, 20, n)).astype("<i2")
        return self.frame(MessageType.AUDIO, quiet.tobytes())

    def next(self, fmt: dict) -> bytes | str:
        """The next thing to send in a running session: a frame, or (rarely) a text message."""
        r = self.rng.random()
        if r >= self.hostile_share:
            if r < 0.80:
                return self.audio(fmt)
            if r < 0.88:
                return self.frame(MessageType.PING, self.rng.randbytes(self.rng.randint(0, 125)))
            if r < 0.93:
                return self.frame(self.rng.choice([0x7E, 0x40, 0x99]), self.rng.randbytes(8))  # unknown: ignored
            control = self.rng.choice(CONTROLS[:4] if self.rng.random() < 0.97 else CONTROLS)  # few LLM turns
            return self.frame(MessageType.CONTROL, json.dumps(control).encode())
        return self.hostile(fmt)

    def hostile(self, fmt: dict) -> bytes | str:
        rng = self.rng
        how = rng.randrange(11)
        if how == 0:
            return self.flip(rng.choice([*self.golden, self.audio(fmt)]))
        if how == 1:
            data = rng.choice(self.golden)
            return data[: rng.randrange(len(data) + 1)]
        if how == 2:
            return rng.choice(self.golden) + rng.randbytes(rng.randint(1, 64))
        if how == 3:
            data = bytearray(rng.choice(self.golden))
            if len(data) >= 18:
                data[14:18] = rng.choice([0, 1, 0xFFFF, 65537, 0xFFFFFFFF, rng.getrandbits(32)]).to_bytes(4, "big")
            return bytes(data)
        if how == 4:
            return self.frame(MessageType.CONTROL, hostile_json(rng, rng.choice(CONTROLS)))
        if how == 5:
            return self.frame(rng.choice([MessageType.HELLO, MessageType.CONTROL]), hostile_json(rng, hello_json(rng)))
        if how == 6:
            return self.frame(MessageType.PING, rng.randbytes(rng.choice([126, 200, 4000])))
        if how == 7:
            return self.frame(rng.choice([MessageType.READY, MessageType.EVENT, MessageType.ERROR, MessageType.PONG,
                                          MessageType.HELLO]), rng.randbytes(rng.randint(0, 40)))
        if how == 8:
            return rng.choice(["hello?", "{}", "\u202e", ""])  # a WebSocket text message
        if how == 9:
            return self.frame(MessageType.AUDIO, rng.randbytes(rng.choice([1, 3, 7, 641, 2000])))  # odd/garbage
        return bytes(rng.randbytes(rng.randint(0, 17)))  # shorter than a header

    def flip(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 6)):
            if out:
                out[self.rng.randrange(len(out))] ^= 1 << self.rng.randrange(8)
        return bytes(out)


# ---------------------------------------------------------------------- SIP


def sdp(port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")


class SipFuzzer:
    """SIP datagrams for a gateway at `target`, sent from `local_port`."""

    METHODS: ClassVar[tuple[str, ...]] = ("INVITE", "OPTIONS", "BYE", "REGISTER", "CANCEL", "ACK", "INFO", "MESSAGE")

    def __init__(self, rng: random.Random, local_port: int, target: str):
        self.rng, self.port, self.target = rng, local_port, target
        self.n = 0

    def valid(self, method: str | None = None) -> list[tuple[str, str]]:
        """(start line, header lines..., body) of a valid request: list of (name, value); name "" is
        the start line and "BODY" the body."""
        self.n += 1
        method = method or self.rng.choice(self.METHODS)
        body = sdp(30000 + 2 * self.rng.randrange(500)) if method == "INVITE" else ""
        if method == "INFO":
            body = "Signal=5\r\nDuration=160\r\n"
        lines = [("", f"{method} sip:agent@{self.target} SIP/2.0"),
                 ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKf{self.n};rport"),
                 ("From", f"<sip:fuzz@127.0.0.1>;tag=f{self.n}"), ("To", f"<sip:agent@{self.target}>"),
                 ("Call-ID", f"fuzz-{self.n}"), ("CSeq", f"{self.rng.randint(1, 9)} {method}"),
                 ("Contact", f"<sip:fuzz@127.0.0.1:{self.port}>"), ("Max-Forwards", "70")]
        if body:
            lines.append(("Content-Type", "application/sdp" if method == "INVITE" else "application/dtmf-relay"))
        lines += [("Content-Length", str(len(body.encode()))), ("BODY", body)]
        return lines

    @staticmethod
    def render(lines: list[tuple[str, str]], eol: str = "\r\n") -> bytes:
        head = [value if not name else f"{name}: {value}" for name, value in lines if name != "BODY"]
        body = next((value for name, value in lines if name == "BODY"), "")
        return (eol.join(head) + eol + eol + body).encode("utf-8", "surrogatepass")

    HOSTILE_HEADER_VALUES: ClassVar[tuple[str, ...]] = (
        "", " ", "²", "١٢٣", "-1", "70000", "0", "4294967296", "9" * 400, "x" * 3000, "<sip:a@b:99999>", "<sip:@:>",
        '"unterminated <sip:a@b>', "SIP/2.0/UDP [::1", "\x00", "SIP/2.0/UDP 10.0.0.1:70000;branch=z9hG4bKx",
        "SIP/2.0/UDP host.invalid:5060;rport=abc", "1 INVITE, 2 BYE", "sip:a@b;lr;lr;lr", "\u202e\u0000\ud800",
    )

    def message(self) -> bytes:
        r = self.rng.random()
        if r < 0.2:
            return self.render(self.valid())
        if r < 0.35:
            return self.torture()
        return self.mutate(self.valid())

    def mutate(self, lines: list[tuple[str, str]]) -> bytes:
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(8)
            i = rng.randrange(len(lines) - 1)  # not the body
            if how == 0:
                lines[i] = (lines[i][0], rng.choice(self.HOSTILE_HEADER_VALUES))
            elif how == 1 and i:
                del lines[i]
            elif how == 2:
                lines.insert(i + 1, lines[i])
            elif how == 3:
                lines[i] = (lines[i][0].lower() if rng.random() < 0.5 else lines[i][0].upper(), lines[i][1])
            elif how == 4:
                lines.insert(i + 1, (rng.choice(["Via", "Content-Length", "CSeq", "X-Junk", "v", "l"]),
                                     rng.choice(self.HOSTILE_HEADER_VALUES)))
            elif how == 5:
                lines[-1] = ("BODY", rng.choice(["", "v=0\r\nc=IN IP4 host.example\r\nm=audio 99999 RTP/AVP ²\r\n",
                                                 "\x00" * 40, sdp(0), lines[-1][1] * 3]))
        data = bytearray(self.render(lines, eol=rng.choice(["\r\n"] * 5 + ["\n"])))
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data) + 1)]
        return bytes(data)

    def torture(self) -> bytes:
        """One of a list of hand-written malformed or unusual messages."""
        rng, lines = self.rng, self.valid(self.rng.choice(["INVITE", "OPTIONS"]))
        cases = [
            lambda: [*lines[:1], ("Via", f"SIP/2.0/UDP 10.0.0.9:70000;branch=z9hG4bKt{self.n}"), *lines[2:]],
            lambda: [*lines[:-2], ("Content-Length", "9999"), lines[-1]],
            lambda: [*lines[:-2], ("Content-Length", "-5"), lines[-1]],
            lambda: [*lines[:-2], ("Content-Length", "1e3"), lines[-1]],
            lambda: [*lines[:-2], ("Content-Length", "0"), ("Content-Length", "500"), lines[-1]],
            lambda: [("", lines[0][1].replace(" SIP/2.0", " SIP/2.1")), *lines[1:]],
            lambda: [("", lines[0][1].replace(" ", "  ")), *lines[1:]],
            lambda: [("", lines[0][1].replace("sip:", "tel:")), *lines[1:]],
            lambda: [lines[0], *[("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKv{k}") for k in range(300)],
                     *lines[2:]],
            lambda: [lines[0], ("From", '"Bob <sip:bob@x>;tag=1'), *lines[2:]],
            lambda: [*lines[:-1], ("Subject", "folded\r\n  continuation\r\n\tmore"), lines[-1]],
            lambda: [lines[0], *[(n[:1].lower() if n in ("Via", "From", "To") else n, v) for n, v in lines[1:]]],
            lambda: [lines[0], *[(n, v) for n, v in lines[1:] if n != "Call-ID"]],
            lambda: [("", "SIP/2.0 999 Weird"), *lines[1:]],
            lambda: [("", "SIP/2.0 099 Too Low"), *lines[1:]],
            lambda: [lines[0], ("Via", "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKipv6;rport=abc"), *lines[2:]],
            lambda: [*lines[:-1], ("Record-Route", "<sip:proxy.invalid;lr>, <garbage"), lines[-1]],
            lambda: [*lines[:-1], ("Contact", "<sip:fuzz@127.0.0.1:0>"), lines[-1]],
            lambda: [*lines[:-1], ("Require", "100rel, timer"), lines[-1]],
            lambda: [*lines[:-1], ("X-Long", "y" * 60000), lines[-1]],
        ]
        if rng.random() < 0.1:
            return rng.choice([b"", b"\r\n\r\n", b"\r\n", b"\x00" * 100, rng.randbytes(rng.randint(1, 1500))])
        return self.render(cases[rng.randrange(len(cases))]())

    def options(self) -> bytes:
        return self.render(self.valid("OPTIONS"))
