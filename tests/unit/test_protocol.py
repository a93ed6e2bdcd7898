"""Protocol v1 (docs/protocol.md): golden vectors, malformed input, message validation."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from voice.protocol import (
    BYE_NORMAL,
    CONTROL_TYPES,
    EVENT_TYPES,
    HEADER_SIZE,
    MAX_PING_PAYLOAD_BYTES,
    PRE_HANDSHAKE_TYPES,
    ConfigUpdate,
    Dtmf,
    EndOfInput,
    ErrorCode,
    Flags,
    Frame,
    FrameReader,
    GenericEvent,
    Hello,
    InputEnded,
    Interrupt,
    MessageType,
    PlaybackMark,
    ProtocolError,
    TextInput,
    TranscriptFinal,
    decode_bye,
    decode_error,
    decode_frame,
    encode_bye,
    encode_control,
    encode_error,
    encode_event,
    encode_frame,
    encode_hello,
    encode_ready,
    is_fatal,
    next_seq,
    parse_control,
    parse_event,
    parse_hello,
    parse_ready,
    pong_for,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
INDEX = json.loads((GOLDEN / "index.json").read_text(encoding="utf-8"))
VALID = [v for v in INDEX["vectors"] if "error" not in v]
INVALID = [v for v in INDEX["vectors"] if "error" in v]


def _bin(vector: dict[str, Any]) -> bytes:
    return (GOLDEN / vector["file"]).read_bytes()


def _by_name(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


def _code(payload: bytes, parse: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        parse(payload)
    return caught.value.code


# ------------------------------------------------------------------ golden vectors


def test_golden_set_covers_the_required_cases() -> None:
    names = {v["name"] for v in INDEX["vectors"]}
    assert len(VALID) >= 14
    assert {"empty", "truncated_header_17", "too_large_u32_max", "length_mismatch_short"} <= names
    assert {v["type"] for v in VALID} >= {int(t) for t in MessageType} | {0x7E}


@_by_name(VALID)
def test_golden_file_matches_the_documented_layout(vector: dict[str, Any]) -> None:
    # Built with plain struct from the spec table, not with encode_frame.
    payload = bytes.fromhex(vector["payload_hex"])
    header = struct.pack(
        ">BBIQI", vector["type"], vector["flags"], vector["seq"], vector["timestamp"], len(payload)
    )
    assert _bin(vector) == header + payload


@_by_name(VALID)
def test_golden_file_decodes_to_the_indexed_fields(vector: dict[str, Any]) -> None:
    frame = decode_frame(_bin(vector))
    assert (frame.type, frame.flags, frame.seq, frame.timestamp) == (
        vector["type"],
        vector["flags"],
        vector["seq"],
        vector["timestamp"],
    )
    assert frame.payload.hex() == vector["payload_hex"]
    if "json" in vector:
        assert json.loads(frame.payload) == vector["json"]


@_by_name(VALID)
def test_golden_fields_encode_to_the_file(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["payload_hex"])
    frame = Frame(vector["type"], vector["flags"], vector["seq"], vector["timestamp"], payload)
    assert encode_frame(frame) == _bin(vector)


_PARSERS = {
    MessageType.HELLO: (parse_hello, encode_hello),
    MessageType.READY: (parse_ready, encode_ready),
    MessageType.CONTROL: (parse_control, encode_control),
    MessageType.EVENT: (parse_event, encode_event),
}


@_by_name([v for v in VALID if "json" in v])
def test_golden_json_payload_parses_and_reencodes_identically(vector: dict[str, Any]) -> None:
    parse, encode = _PARSERS[MessageType(vector["type"])]
    payload = bytes.fromhex(vector["payload_hex"])
    message = parse(payload)
    assert not isinstance(message, GenericEvent)
    assert encode(message) == payload


@_by_name(INVALID)
def test_invalid_vector_is_refused_with_its_error_code(vector: dict[str, Any]) -> None:
    assert _code(_bin(vector), decode_frame) == ErrorCode[vector["error"]]


def test_invalid_vector_files_hold_the_documented_bytes() -> None:
    def header(length: int) -> bytes:
        return bytes([0x10, 0]) + b"\x00" * 12 + length.to_bytes(4, "big")

    expected = {
        "empty": b"",
        "truncated_header_17": header(0)[:17],
        "too_large_u32_max": header(0xFFFFFFFF) + b"\x00" * 4,
        "too_large_before_mismatch": header(65537),
        "length_mismatch_short": header(10) + b"abc",
        "length_mismatch_long": header(2) + b"abcde",
    }
    assert {v["name"]: _bin(v) for v in INVALID} == expected


def test_golden_files_are_what_make_vectors_writes_now(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", GOLDEN / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in GOLDEN.iterdir() if p.suffix in (".bin", ".json"))
    assert written == committed
    for name in written:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name


# ------------------------------------------------------------------ frame layer


def test_header_is_18_bytes_big_endian() -> None:
    data = encode_frame(Frame(MessageType.AUDIO, Flags.SEGMENT_START, 0x01020304, 0x05060708090A0B0C, b"xy"))
    assert HEADER_SIZE == 18
    assert data == bytes.fromhex("10 01 01020304 05060708090a0b0c 00000002") + b"xy"


def test_truncated_header_is_reported_before_an_oversized_length() -> None:
    oversized = struct.pack(">BBIQI", 0x10, 0, 0, 0, 0xFFFFFFFF)
    assert _code(oversized[:17], decode_frame) == ErrorCode.BAD_FRAME
    assert _code(oversized, decode_frame) == ErrorCode.TOO_LARGE


def test_too_large_is_judged_from_the_header_without_the_payload() -> None:
    class HeaderOnly(bytes):
        """Claims to be 4 GiB long; any read past the header fails the test."""

        def __len__(self) -> int:
            return HEADER_SIZE + 0xFFFFFFFF

        def __getitem__(self, key: Any) -> Any:
            raise AssertionError("payload was touched")

    data = HeaderOnly(struct.pack(">BBIQI", 0x10, 0, 0, 0, 0xFFFFFFFF))
    assert _code(data, decode_frame) == ErrorCode.TOO_LARGE


def test_max_payload_bytes_is_inclusive_and_configurable() -> None:
    at_limit = encode_frame(Frame(MessageType.AUDIO, payload=b"\x00" * 100))
    assert len(decode_frame(at_limit, max_payload_bytes=100).payload) == 100
    assert _code(at_limit, lambda d: decode_frame(d, max_payload_bytes=99)) == ErrorCode.TOO_LARGE


def test_decode_accepts_bytes_bytearray_and_memoryview() -> None:
    data = encode_frame(Frame(MessageType.PING, seq=3, payload=b"abc"))
    frames = [decode_frame(data), decode_frame(bytearray(data)), decode_frame(memoryview(data))]
    assert frames[0] == frames[1] == frames[2] == Frame(MessageType.PING, 0, 3, 0, b"abc")
    assert type(frames[2].payload) is bytes


def test_unknown_type_decodes_and_is_marked_unknown() -> None:
    frame = decode_frame(encode_frame(Frame(0x7E, payload=b"?")))
    assert (frame.type, frame.known, frame.message_type) == (0x7E, False, None)
    assert decode_frame(encode_frame(Frame(MessageType.BYE))).message_type is MessageType.BYE


def test_reserved_flag_bits_are_kept_but_do_not_change_meaning() -> None:
    frame = decode_frame(encode_frame(Frame(MessageType.AUDIO, flags=0xFE)))
    assert frame.flags == 0xFE
    assert frame.has(Flags.SEGMENT_END) and not frame.has(Flags.SEGMENT_START)


@pytest.mark.parametrize(
    "field, value",
    [("type", 256), ("flags", -1), ("seq", 2**32), ("timestamp", 2**64), ("timestamp", -1)],
)
def test_encode_refuses_fields_that_do_not_fit(field: str, value: int) -> None:
    fields: dict[str, Any] = {"type": MessageType.PING, field: value}
    with pytest.raises(ValueError, match=field):
        encode_frame(Frame(**fields))


def test_sequence_numbers_wrap_at_2_to_the_32() -> None:
    assert next_seq(0) == 1
    assert next_seq(0xFFFFFFFF) == 0


def test_only_hello_ping_and_bye_may_precede_ready() -> None:
    assert {MessageType.HELLO, MessageType.PING, MessageType.BYE} == PRE_HANDSHAKE_TYPES


def test_pong_echoes_the_ping_payload_with_its_own_seq() -> None:
    pong = pong_for(Frame(MessageType.PING, seq=5, timestamp=9, payload=b"\x01\x02"), seq=11, timestamp=480)
    assert pong == Frame(MessageType.PONG, 0, 11, 480, b"\x01\x02")


def test_ping_longer_than_125_bytes_is_not_echoed() -> None:
    pong_for(Frame(MessageType.PING, payload=b"x" * MAX_PING_PAYLOAD_BYTES), seq=0, timestamp=0)
    ping = Frame(MessageType.PING, payload=b"x" * (MAX_PING_PAYLOAD_BYTES + 1))
    assert _code(ping, lambda p: pong_for(p, seq=0, timestamp=0)) == ErrorCode.BAD_MESSAGE


# ------------------------------------------------------------------ stream reader

_STREAM_FRAMES = [
    Frame(MessageType.AUDIO, Flags.SEGMENT_START, 0, 0, bytes(range(40))),
    Frame(MessageType.PING, 0, 1, 960, b""),
    Frame(MessageType.CONTROL, 0, 2, 1920, b'{"type":"interrupt"}'),
]
_STREAM = b"".join(encode_frame(f) for f in _STREAM_FRAMES)


def test_reader_returns_all_frames_of_one_chunk() -> None:
    reader = FrameReader()
    assert reader.feed(_STREAM) == _STREAM_FRAMES
    assert reader.buffered_bytes == 0


def test_reader_reassembles_frames_fed_one_byte_at_a_time() -> None:
    reader = FrameReader()
    out = [frame for i in range(len(_STREAM)) for frame in reader.feed(_STREAM[i : i + 1])]
    assert out == _STREAM_FRAMES


def test_reader_refuses_an_oversized_frame_as_soon_as_its_header_arrives() -> None:
    reader = FrameReader(max_payload_bytes=1000)
    header = struct.pack(">BBIQI", 0x10, 0, 0, 0, 1001)
    assert reader.feed(header[:10]) == []
    assert _code(header[10:], reader.feed) == ErrorCode.TOO_LARGE
    assert reader.buffered_bytes == 0


def test_reader_stays_failed_after_an_error() -> None:
    reader = FrameReader(max_payload_bytes=10)
    with pytest.raises(ProtocolError):
        reader.feed(struct.pack(">BBIQI", 0x10, 0, 0, 0, 11))
    assert _code(encode_frame(_STREAM_FRAMES[1]), reader.feed) == ErrorCode.TOO_LARGE


# ------------------------------------------------------------------ error codes

_SPEC_CODES = {
    "BAD_FRAME": 4000, "LENGTH_MISMATCH": 4001, "TOO_LARGE": 4002, "BAD_JSON": 4003, "BAD_MESSAGE": 4004,
    "UNSUPPORTED_VERSION": 4005, "HANDSHAKE_REQUIRED": 4006, "AUTH_FAILED": 4007, "UNSUPPORTED_CODEC": 4008,
    "BAD_AUDIO": 4009, "SERVER_BUSY": 4010, "IDLE_TIMEOUT": 4011, "SHUTTING_DOWN": 4012, "INTERNAL": 4013,
    "TOO_MANY_ERRORS": 4014, "RATE_LIMITED": 4015,
}  # fmt: skip
_SPEC_FATAL = {
    "UNSUPPORTED_VERSION", "HANDSHAKE_REQUIRED", "AUTH_FAILED", "UNSUPPORTED_CODEC", "SERVER_BUSY",
    "IDLE_TIMEOUT", "SHUTTING_DOWN", "TOO_MANY_ERRORS",
}  # fmt: skip


def test_error_codes_have_the_numbers_of_the_spec() -> None:
    assert {code.name: code.value for code in ErrorCode} == _SPEC_CODES


def test_fatal_codes_after_ready_are_those_of_the_spec() -> None:
    assert {code.name for code in ErrorCode if is_fatal(code)} == _SPEC_FATAL


def test_every_error_is_fatal_during_the_handshake() -> None:
    assert all(is_fatal(code, during_handshake=True) for code in ErrorCode)


def test_an_unknown_error_code_is_treated_as_fatal() -> None:
    assert is_fatal(4999)


def test_error_payload_round_trips_non_ascii_text() -> None:
    payload = encode_error(ErrorCode.BAD_AUDIO, "trame illisible é")
    assert payload[:2] == b"\x0f\xa9"  # 4009
    assert decode_error(payload) == (ErrorCode.BAD_AUDIO, "trame illisible é")


def test_error_payload_keeps_an_unknown_code_as_a_number() -> None:
    code, message = decode_error(b"\x13\x88oops")
    assert (code, type(code), message) == (5000, int, "oops")


def test_error_payload_shorter_than_a_code_is_bad_message() -> None:
    assert _code(b"\x0f", decode_error) == ErrorCode.BAD_MESSAGE


def test_error_payload_with_broken_utf8_still_yields_its_code() -> None:
    assert decode_error(b"\x0f\xa7bad \xff") == (ErrorCode.AUTH_FAILED, "bad \ufffd")


def test_bye_payload_defaults_to_normal_with_no_text() -> None:
    assert encode_bye() == b"\x00\x00"
    assert decode_bye(encode_bye()) == (BYE_NORMAL, "")
    assert decode_bye(encode_bye(ErrorCode.IDLE_TIMEOUT, "idle")) == (ErrorCode.IDLE_TIMEOUT, "idle")


# ------------------------------------------------------------------ HELLO / READY


def test_hello_fills_in_defaults() -> None:
    hello = parse_hello(b'{"version":1}')
    assert (hello.token, hello.client, hello.options) == (None, None, {})
    assert (hello.input.codec, hello.input.sample_rate, hello.input.channels) == ("opus", 48000, 1)
    assert (hello.output.codec, hello.output.sample_rate) == ("opus", 48000)


def test_hello_ignores_unknown_keys() -> None:
    hello = parse_hello(b'{"version":2,"future":true,"input":{"codec":"pcm16","sample_rate":8000,"x":1}}')
    assert (hello.version, hello.input.codec, hello.input.sample_rate) == (2, "pcm16", 8000)


@pytest.mark.parametrize(
    "payload, code",
    [
        (b'{"version":1,"input":{"channels":2}}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"input":{"sample_rate":44100}}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"output":{"codec":"pcm16","sample_rate":96000}}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"output":{"codec":"pcm16","sample_rate":7999}}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"input":{"sample_rate":"48000"}}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"input":{"codec":"aac"}}', ErrorCode.UNSUPPORTED_CODEC),
        (b'{"version":0}', ErrorCode.BAD_MESSAGE),
        (b'{"version":true}', ErrorCode.BAD_MESSAGE),
        (b'{"token":"t"}', ErrorCode.BAD_MESSAGE),
        (b'{"version":1,"options":[]}', ErrorCode.BAD_MESSAGE),
        (b"[1]", ErrorCode.BAD_MESSAGE),
        (b'{"version":1', ErrorCode.BAD_JSON),
        (b"", ErrorCode.BAD_JSON),
        (b'{"version":NaN}', ErrorCode.BAD_JSON),
        (b'{"client":"\xff"}', ErrorCode.BAD_JSON),
    ],
)
def test_bad_hello_is_refused_with_the_right_code(payload: bytes, code: ErrorCode) -> None:
    assert _code(payload, parse_hello) == code


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_pcm16_accepts_any_rate_from_8_to_48_khz(rate: int) -> None:
    hello = parse_hello(b'{"version":1,"input":{"codec":"pcm16","sample_rate":%d}}' % rate)
    assert hello.input.sample_rate == rate


def test_validation_message_is_one_short_line_naming_the_field() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_hello(b'{"version":1,"input":{"channels":2}}')
    message = caught.value.message
    assert "input.channels" in message and "mono" in message
    assert "\n" not in message and "pydantic" not in message and len(message) < 200


def test_ready_round_trips() -> None:
    ready = parse_ready(
        b'{"version":1,"session_id":"s","input":{},"output":{"codec":"pcm16","sample_rate":24000},'
        b'"server":"x"}'
    )
    assert (ready.frame_ms, ready.limits.max_payload_bytes, ready.limits.idle_timeout_s) == (20, 65536, 60.0)
    assert parse_ready(encode_ready(ready)) == ready


def test_hello_encodes_compact_with_every_field() -> None:
    assert encode_hello(Hello(version=1)) == (
        b'{"version":1,"token":null,"input":{"codec":"opus","sample_rate":48000,"channels":1},'
        b'"output":{"codec":"opus","sample_rate":48000},"options":{},"client":null}'
    )


# ------------------------------------------------------------------ CONTROL


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b'{"type":"interrupt"}', Interrupt()),
        (b'{"type":"playback_mark","played_samples":0}', PlaybackMark(played_samples=0, segment=None)),
        (
            b'{"type":"playback_mark","played_samples":5,"segment":2}',
            PlaybackMark(played_samples=5, segment=2),
        ),
        (b'{"type":"end_of_input","extra":1}', EndOfInput()),
        (b'{"type":"config","options":{"language":"de"}}', ConfigUpdate(options={"language": "de"})),
        (b'{"type":"text","text":"hallo"}', TextInput(text="hallo")),
        (b'{"type":"dtmf","digits":"0123456789*#ABCD"}', Dtmf(digits="0123456789*#ABCD")),
    ],
)
def test_each_control_type_parses(payload: bytes, expected: Any) -> None:
    assert parse_control(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"reboot"}',
        b'{"kind":"interrupt"}',
        b'{"type":7}',
        b'{"type":"playback_mark"}',
        b'{"type":"playback_mark","played_samples":-1}',
        b'{"type":"playback_mark","played_samples":1.5}',
        b'{"type":"playback_mark","played_samples":true}',
        b'{"type":"config","options":"de"}',
        b'{"type":"text"}',
        b'{"type":"dtmf","digits":"12E"}',
        b'{"type":"dtmf","digits":""}',
    ],
)
def test_malformed_control_is_bad_message(payload: bytes) -> None:
    assert _code(payload, parse_control) == ErrorCode.BAD_MESSAGE


def test_unknown_control_type_message_names_the_type() -> None:
    with pytest.raises(ProtocolError, match="unknown type 'reboot'"):
        parse_control(b'{"type":"reboot"}')


def test_control_type_tags_are_those_of_the_spec() -> None:
    assert set(CONTROL_TYPES) == {"interrupt", "playback_mark", "end_of_input", "config", "text", "dtmf"}


# ------------------------------------------------------------------ EVENT

_EVENT_EXAMPLES = {
    "speech_started": {"utterance": 1, "at_ms": 640.0},
    "speech_stopped": {"utterance": 1, "at_ms": 1880.0},
    "transcript_partial": {"utterance": 1, "text": "hello wor", "stable_text": "hello"},
    "transcript_final": {"utterance": 1, "text": "hello world", "start_ms": 640.0, "end_ms": 1880.0,
                         "language": None, "continues": None},
    "input_ended": {},
    "session_options": {"options": {"language": "en"}},
    "agent_text": {"turn": 1, "text": "Hi!", "final": True},
    "tool_call": {"turn": 1, "id": "c1", "name": "get_time", "arguments": {"tz": "UTC"}},
    "tool_result": {"turn": 1, "id": "c1", "ok": True, "result": ["12:00", 1]},
    "state_changed": {"state": "booking", "slots": {"date": None}},
    "turn_metrics": {"turn": 1, "stages_ms": {"asr": 120.5, "llm": 300.0}},
    "interrupted": {"turn": 1, "played_ms": 820.0, "heard_text": "Once upon a time", "reason": "barge_in"},
    "end_of_turn": {"utterance": 1, "complete": True, "probability": 0.93, "wait_ms": 250.0,
                    "reason": "ends with '?'", "audio_probability": 0.9},
    "backchannel": {"utterance": 2, "text": "Mm-hmm.", "resumed": True},
    "call_ending": {"reason": "goodbye"},
}  # fmt: skip


def test_every_event_type_of_the_spec_has_an_example() -> None:
    assert set(EVENT_TYPES) == set(_EVENT_EXAMPLES)


@pytest.mark.parametrize("event_type", list(_EVENT_EXAMPLES))
def test_each_event_type_parses_typed_and_reencodes_identically(event_type: str) -> None:
    fields = {"type": event_type, **_EVENT_EXAMPLES[event_type], "t_ms": 5.5}
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    event = parse_event(payload.encode())
    assert type(event).__name__.lower() == event_type.replace("_", "")
    assert encode_event(event) == payload.encode()


def test_unknown_event_type_parses_to_a_generic_event_keeping_its_fields() -> None:
    event = parse_event(b'{"type":"emotion","label":"happy","t_ms":3}')
    assert isinstance(event, GenericEvent)
    assert (event.type, event.t_ms, event.model_extra) == ("emotion", 3.0, {"label": "happy"})


def test_known_event_type_with_wrong_fields_is_bad_message() -> None:
    payload = b'{"type":"speech_started","utterance":"one","at_ms":0}'
    assert _code(payload, parse_event) == ErrorCode.BAD_MESSAGE


def test_event_without_a_type_is_bad_message() -> None:
    assert _code(b'{"utterance":1}', parse_event) == ErrorCode.BAD_MESSAGE


def test_event_encoding_omits_unset_t_ms_but_keeps_null_language() -> None:
    assert encode_event(InputEnded()) == b'{"type":"input_ended"}'
    final = TranscriptFinal(utterance=0, text="é", start_ms=0, end_ms=20)
    expected = (
        '{"type":"transcript_final","utterance":0,"text":"é","start_ms":0.0,"end_ms":20.0,"language":null,'
        '"continues":null}'
    )
    assert encode_event(final) == expected.encode()


# ------------------------------------------------------------------ the spec document

_DOC_PARSERS = {"hello": parse_hello, "ready": parse_ready, "control": parse_control, "event": parse_event}


def test_every_tagged_json_example_in_the_spec_parses() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json (\w+)\n(.*?)```", text, flags=re.S)
    kinds = [kind for kind, _ in blocks]
    assert set(kinds) == set(_DOC_PARSERS)
    assert kinds.count("control") >= len(CONTROL_TYPES) and kinds.count("event") >= len(EVENT_TYPES)
    for kind, body in blocks:
        message = _DOC_PARSERS[kind](body.encode())
        assert not isinstance(message, GenericEvent), body


# ---------------------------------------------------------------- hostile JSON (issue 13)


@pytest.mark.parametrize("parse", [parse_hello, parse_control])
def test_json_nested_1000_deep_is_bad_json_not_a_recursion_error(parse) -> None:
    payload = b'{"version":1,"type":"text","text":"x","options":' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(payload) < 2100  # the outside tester's 2 KB frame
    with pytest.raises(ProtocolError) as caught:
        parse(payload)
    assert caught.value.code == ErrorCode.BAD_JSON and "deeper than 32" in caught.value.message


def test_json_nested_32_deep_is_accepted_and_33_is_not() -> None:
    def config(lists: int) -> bytes:  # the control object and its options object are 2 levels
        return f'{{"type":"config","options":{{"x":{"[" * lists}{"]" * lists}}}}}'.encode()

    assert isinstance(parse_control(config(30)), ConfigUpdate)
    with pytest.raises(ProtocolError, match="deeper than 32"):
        parse_control(config(31))


@pytest.mark.parametrize("payload", [
    b'{"type":"text","text":"\\ud800"}',                      # a typed turn killed its reply task
    b'{"type":"config","options":{"\\udfff":1}}',             # in a key
    b'{"type":"dtmf","digits":"1","x":["a","\\udbff"]}',      # in an ignored field: still refused
])
def test_a_lone_surrogate_anywhere_in_a_control_is_invalid_unicode(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_control(payload)
    assert caught.value.code == ErrorCode.BAD_MESSAGE and "invalid unicode" in caught.value.message


def test_a_lone_surrogate_in_hello_options_is_invalid_unicode() -> None:  # it crashed the session
    with pytest.raises(ProtocolError) as caught:
        parse_hello(b'{"version":1,"options":{"agent":"\\ud800x"}}')
    assert caught.value.code == ErrorCode.BAD_MESSAGE and "invalid unicode" in caught.value.message


def test_an_escaped_surrogate_pair_is_one_valid_character() -> None:
    assert parse_control(b'{"type":"text","text":"\\ud83d\\ude00"}') == TextInput(text="\U0001f600")


@pytest.mark.parametrize("number", [b"1e400", b"-1e999"])
def test_a_number_out_of_float_range_is_bad_json(number: bytes) -> None:  # read as inf, READY could not echo it
    with pytest.raises(ProtocolError) as caught:
        parse_hello(b'{"version":1,"options":{"x":' + number + b"}}")
    assert caught.value.code == ErrorCode.BAD_JSON and "out of range" in caught.value.message


def test_a_playback_mark_beyond_u64_is_bad_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_control(b'{"type":"playback_mark","played_samples":%d}' % 2**64)
    assert caught.value.code == ErrorCode.BAD_MESSAGE


def test_an_oversized_ping_is_refused_by_decode_frame() -> None:  # it was answered with PONG
    with pytest.raises(ProtocolError) as caught:
        decode_frame(encode_frame(Frame(MessageType.PING, payload=b"x" * 200)))
    assert caught.value.code == ErrorCode.BAD_MESSAGE and "PING" in caught.value.message
    ping = Frame(MessageType.PING, payload=b"x" * MAX_PING_PAYLOAD_BYTES)
    assert decode_frame(encode_frame(ping)) == ping
