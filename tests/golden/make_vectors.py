"""Writes the golden vectors of protocol v1: index.json plus one .bin file per vector.

The Python and JavaScript tests both read these files, so the two implementations are held
to the same bytes. Valid frames are encoded with voice.protocol; invalid ones are built by
hand (no encoder produces them). The tests re-check every file against the documented
layout with plain struct, so an encoder bug cannot bless itself, and re-run this script to
check the committed files are current. Deterministic: no clock, no randomness.

    .venv/bin/python -m tests.golden.make_vectors [OUT_DIR]   # from the repo root; default: this folder
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

from voice.protocol import (
    BYE_NORMAL,
    DEFAULT_MAX_PAYLOAD_BYTES,
    ErrorCode,
    Flags,
    Frame,
    Hello,
    InputFormat,
    Interrupt,
    MessageType,
    OutputFormat,
    PlaybackMark,
    Ready,
    SpeechStarted,
    TranscriptFinal,
    encode_bye,
    encode_control,
    encode_error,
    encode_event,
    encode_frame,
    encode_hello,
    encode_ready,
    messages,
)

HERE = Path(__file__).resolve().parent

# One 20 ms CELT fullband mono packet: TOC byte 0xF8 (config 31, mono, one frame), then
# 39 bytes of stand-in compressed data.
_OPUS_PACKET = b"\xf8" + (hashlib.sha256(b"opus").digest() + hashlib.sha256(b"opus2").digest())[:39]
# 16 samples of a 1 kHz sine at 16 kHz, amplitude 8000, little-endian like all our PCM16.
_PCM16 = struct.pack(
    "<16h", 0, 3061, 5657, 7391, 8000, 7391, 5657, 3061, 0, -3061, -5657, -7391, -8000, -7391, -5657, -3061
)

_HELLO_OPUS = Hello(
    version=1, token="s3cret", options={"agent": "demo", "language": "en"}, client="voice-web/0.1"
)
_HELLO_PCM16 = Hello(
    version=1,
    input=InputFormat(codec="pcm16", sample_rate=16000),
    output=OutputFormat(codec="pcm16", sample_rate=16000),
    client="voice-cli/0.1",
)
_READY = Ready(
    session_id="sess-0001",
    input=InputFormat(),
    output=OutputFormat(),
    server="voice-agent/0.1.0",
    options={"agent": "demo", "language": "en"},
)
_CAFE = TranscriptFinal(
    utterance=2, text="Un café, s'il vous plaît.", start_ms=1200.0, end_ms=2460.0, language="fr", t_ms=2515.5
)
# The turn-taking events (docs/protocol.md §8): the end-of-turn verdict, a merged (continued)
# utterance, a backchannel, a cut with its reason, and the agent ending the call.
_TURN_EVENTS = [
    ("event_end_of_turn", messages.EndOfTurn(utterance=3, complete=False, probability=0.04, wait_ms=2000.0,
                                             reason="ends with 'for'", audio_probability=0.81, t_ms=4100.0)),
    ("event_transcript_final_continued", TranscriptFinal(utterance=4, text="A table for six people.",
                                                         start_ms=3000.0, end_ms=6120.0, language="en",
                                                         continues=3)),
    ("event_backchannel", messages.Backchannel(utterance=5, text="Mm-hmm.", resumed=True)),
    ("event_interrupted_continuation", messages.Interrupted(turn=2, played_ms=0.0, heard_text="",
                                                            reason="continuation")),
    ("event_call_ending", messages.CallEnding(reason="hang_up", t_ms=90500.0)),
]


def _valid(
    name: str, msg_type: int, payload: bytes, *, flags: int = 0, seq: int = 0, timestamp: int = 0, note: str
) -> dict[str, Any]:
    return {
        "name": name,
        "type": msg_type,
        "flags": flags,
        "seq": seq,
        "timestamp": timestamp,
        "payload": payload,
        "note": note,
    }


def valid_vectors() -> list[dict[str, Any]]:
    """Frames every decoder must accept; `payload` is bytes here, hex in the index."""
    T = MessageType
    return [
        _valid("hello_opus_48k", T.HELLO, encode_hello(_HELLO_OPUS), note="HELLO, Opus 48 kHz both ways"),
        _valid("hello_pcm16_16k", T.HELLO, encode_hello(_HELLO_PCM16), note="HELLO, PCM16 16 kHz, no token"),
        _valid("ready", T.READY, encode_ready(_READY), note="READY with effective formats and limits"),
        _valid(
            "audio_opus_segment_start",
            T.AUDIO,
            _OPUS_PACKET,
            flags=Flags.SEGMENT_START,
            seq=7,
            timestamp=960,
            note="40-byte Opus packet opening an utterance, at sample 960",
        ),
        _valid(
            "audio_pcm16_segment_end",
            T.AUDIO,
            _PCM16,
            flags=Flags.SEGMENT_END,
            seq=12,
            timestamp=3200,
            note="16 PCM16 LE samples closing an utterance",
        ),
        _valid(
            "event_transcript_final_cafe",
            T.EVENT,
            encode_event(_CAFE),
            seq=42,
            timestamp=96000,
            note="EVENT with non-ASCII text",
        ),
        *(_valid(name, T.EVENT, encode_event(event), seq=50 + i, note=f"EVENT {event.type}")
          for i, (name, event) in enumerate(_TURN_EVENTS)),
        _valid(
            "event_speech_started",
            T.EVENT,
            encode_event(SpeechStarted(utterance=2, at_ms=1200.0, t_ms=1234.5)),
            seq=40,
            timestamp=57600,
            note="EVENT speech_started",
        ),
        _valid(
            "control_playback_mark",
            T.CONTROL,
            encode_control(PlaybackMark(played_samples=96000, segment=3)),
            seq=3,
            timestamp=9600,
            note="CONTROL playback_mark",
        ),
        _valid(
            "control_interrupt",
            T.CONTROL,
            encode_control(Interrupt()),
            seq=4,
            timestamp=10560,
            note="CONTROL interrupt",
        ),
        _valid(
            "error_auth_failed",
            T.ERROR,
            encode_error(ErrorCode.AUTH_FAILED, "bad token"),
            note="ERROR 4007 'bad token'",
        ),
        _valid("ping", T.PING, bytes(range(8)), seq=5, timestamp=4800, note="PING with 8 opaque bytes"),
        _valid("pong", T.PONG, bytes(range(8)), seq=9, timestamp=7680, note="PONG echoing that PING"),
        _valid(
            "bye_normal",
            T.BYE,
            encode_bye(BYE_NORMAL, "client closed"),
            seq=100,
            timestamp=480000,
            note="BYE reason 0 (normal) with text",
        ),
        _valid(
            "bye_with_error_reason",
            T.BYE,
            encode_bye(ErrorCode.BAD_MESSAGE, "unreadable READY"),
            seq=1,
            timestamp=0,
            note="client gives up with an ErrorCode as the reason",
        ),
        _valid(
            "unknown_type_0x7e",
            0x7E,
            b"from the future",
            seq=1,
            timestamp=1,
            note="type 0x7E is not defined: decodes, marked unknown, receivers skip it",
        ),
        _valid(
            "seq_max_timestamp_2_40",
            T.PING,
            b"",
            seq=0xFFFFFFFF,
            timestamp=2**40,
            note="largest seq (next one wraps to 0), 40-bit timestamp, empty payload",
        ),
        _valid(
            "audio_reserved_flags",
            T.AUDIO,
            _OPUS_PACKET[:3],
            flags=0xFD,
            seq=2,
            timestamp=1920,
            note="reserved flag bits set: kept in Frame.flags, ignored; SEGMENT_START set",
        ),
    ]


def _header(msg_type: int, flags: int, seq: int, timestamp: int, length: int) -> bytes:
    return struct.pack(">BBIQI", msg_type, flags, seq, timestamp, length)


def invalid_vectors() -> list[dict[str, Any]]:
    """Byte strings every decoder must refuse with `error` (max_payload_bytes 65536)."""
    audio = MessageType.AUDIO
    return [
        {"name": "empty", "data": b"", "error": "BAD_FRAME", "note": "no bytes at all"},
        {
            "name": "truncated_header_17",
            "data": _header(audio, 0, 0, 0, 0)[:17],
            "error": "BAD_FRAME",
            "note": "17 of the 18 header bytes",
        },
        {
            "name": "too_large_u32_max",
            "data": _header(audio, 0, 0, 0, 0xFFFFFFFF) + b"\x00" * 4,
            "error": "TOO_LARGE",
            "note": "length 0xFFFFFFFF, 4 bytes present: refused from the header",
        },
        {
            "name": "too_large_before_mismatch",
            "data": _header(audio, 0, 0, 0, DEFAULT_MAX_PAYLOAD_BYTES + 1),
            "error": "TOO_LARGE",
            "note": "length 65537, nothing present: TOO_LARGE is checked before LENGTH_MISMATCH",
        },
        {
            "name": "length_mismatch_short",
            "data": _header(audio, 0, 0, 0, 10) + b"abc",
            "error": "LENGTH_MISMATCH",
            "note": "length 10, 3 bytes present",
        },
        {
            "name": "length_mismatch_long",
            "data": _header(audio, 0, 0, 0, 2) + b"abcde",
            "error": "LENGTH_MISMATCH",
            "note": "length 2, 5 bytes present",
        },
    ]


def build() -> tuple[dict[str, Any], dict[str, bytes]]:
    """(index, {file name: file bytes})."""
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    for vector in valid_vectors():
        file = f"{vector['name']}.bin"
        payload: bytes = vector["payload"]
        frame = Frame(int(vector["type"]), int(vector["flags"]), vector["seq"], vector["timestamp"], payload)
        files[file] = encode_frame(frame)
        entry = {
            "name": vector["name"],
            "file": file,
            "type": frame.type,
            "flags": frame.flags,
            "seq": frame.seq,
            "timestamp": frame.timestamp,
            "payload_hex": payload.hex(),
        }
        if frame.type in (MessageType.HELLO, MessageType.READY, MessageType.EVENT, MessageType.CONTROL):
            entry["json"] = json.loads(payload)
        entry["note"] = vector["note"]
        entries.append(entry)
    for vector in invalid_vectors():
        file = f"{vector['name']}.bin"
        files[file] = vector["data"]
        entries.append(
            {"name": vector["name"], "file": file, "error": vector["error"], "note": vector["note"]}
        )
    index = {"protocol_version": 1, "max_payload_bytes": DEFAULT_MAX_PAYLOAD_BYTES, "vectors": entries}
    return index, files


def index_text(index: dict[str, Any]) -> str:
    """The exact text of index.json (stable formatting so regenerating changes nothing)."""
    return json.dumps(index, indent=2, ensure_ascii=False) + "\n"


def write(out_dir: Path) -> None:
    """Write index.json and the .bin files into out_dir."""
    index, files = build()
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, data in files.items():
        (out_dir / file).write_bytes(data)
    (out_dir / "index.json").write_text(index_text(index), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
