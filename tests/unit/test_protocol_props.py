"""Properties of protocol v1 under any input: a decoder answers a Frame/message or a ProtocolError,
never another exception, and whatever a parser accepts can be encoded back (the server echoes
HELLO options in READY, events go out as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from hostile_json import deeply_nested_text, dumps_any, json_values, shaped_like
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voice.protocol import (
    HEADER_SIZE,
    MAX_PING_PAYLOAD_BYTES,
    ErrorCode,
    Frame,
    FrameReader,
    MessageType,
    ProtocolError,
    decode_bye,
    decode_error,
    decode_frame,
    encode_frame,
)
from voice.protocol import messages as msg

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FRAMES = [p.read_bytes() for p in sorted(GOLDEN.glob("*.bin"))]
HELLO = json.loads((GOLDEN / "index.json").read_text())["vectors"][0]["json"]
CONTROLS = [{"type": "interrupt"}, {"type": "playback_mark", "played_samples": 960, "segment": 0},
            {"type": "end_of_input"}, {"type": "config", "options": {"language": "de"}},
            {"type": "text", "text": "What time is it?"}, {"type": "dtmf", "digits": "12#"}]
EVENTS = [{"type": "transcript_final", "utterance": 2, "text": "Un café", "start_ms": 1.0, "end_ms": 2.0},
          {"type": "tool_call", "turn": 1, "id": "c1", "name": "get_time", "arguments": {"tz": "UTC"}},
          {"type": "state_changed", "state": "s", "slots": {"date": None}}, {"type": "future_event", "x": 1}]
props = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_protocol_error(data: bytes) -> Frame | None:
    try:
        return decode_frame(data)
    except ProtocolError:
        return None


def parsed_or_none(parse, payload: bytes):
    """parse(payload), or None for a ProtocolError; anything else fails the test."""
    try:
        return parse(payload)
    except ProtocolError as e:
        assert isinstance(e.code, ErrorCode) and e.message
        return None


# ---------------------------------------------------------------- frames


@props
@given(st.binary(max_size=400))
def test_any_bytes_decode_to_a_frame_that_encodes_back_or_a_protocol_error(data):
    frame = decode_or_protocol_error(data)
    if frame is not None:
        assert encode_frame(frame) == data


@props
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.binary(max_size=300))
def test_every_encodable_frame_decodes_to_itself_except_an_oversized_ping(kind, flags, seq, timestamp, payload):
    frame = Frame(kind, flags, seq, timestamp, payload)
    if kind == MessageType.PING and len(payload) > MAX_PING_PAYLOAD_BYTES:
        assert decode_or_protocol_error(encode_frame(frame)) is None
    else:
        assert decode_frame(encode_frame(frame)) == frame


@props
@given(st.lists(st.binary(max_size=60), max_size=12))
def test_a_byte_stream_cut_anywhere_gives_frames_or_a_protocol_error(chunks):
    reader = FrameReader(max_payload_bytes=64)
    try:
        for chunk in chunks:
            for frame in reader.feed(chunk):
                assert len(frame.payload) <= 64
    except ProtocolError:
        pass


@st.composite
def mutated(draw, frames: list[bytes]) -> bytes:
    """A golden frame with one of: bit flips, truncation, appended junk, a rewritten length field,
    a different type byte."""
    data = bytearray(draw(st.sampled_from(frames)))
    how = draw(st.sampled_from(["flip", "truncate", "append", "length", "type"]))
    if how == "flip" and data:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "append":
        data += draw(st.binary(min_size=1, max_size=40))
    elif how == "length" and len(data) >= HEADER_SIZE:
        data[14:18] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    elif len(data) >= 1:
        data[0] = draw(st.sampled_from([t.value for t in MessageType] + [0, 0x7E, 0xFF]))
    return bytes(data)


PARSERS = {MessageType.HELLO: msg.parse_hello, MessageType.READY: msg.parse_ready,
           MessageType.CONTROL: msg.parse_control, MessageType.EVENT: msg.parse_event,
           MessageType.ERROR: decode_error, MessageType.BYE: decode_bye}


@props
@given(mutated(GOLDEN_FRAMES))
def test_mutated_golden_frames_decode_and_parse_or_give_a_protocol_error(data):
    frame = decode_or_protocol_error(data)
    if frame is not None and frame.type in PARSERS:
        parsed_or_none(PARSERS[MessageType(frame.type)], frame.payload)


@props
@given(st.binary(max_size=80))
def test_error_and_bye_payloads_decode_to_a_code_and_text_or_bad_message(payload):
    for decode in (decode_error, decode_bye):
        result = parsed_or_none(decode, payload)
        if result is not None:
            code, text = result
            assert 0 <= code <= 0xFFFF and isinstance(text, str)
            text.encode("utf-8")  # replaced, never a lone surrogate


# ---------------------------------------------------------------- JSON payloads


@props
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_or_json_as_hello_control_event_is_parsed_or_a_protocol_error(payload):
    for parse in (msg.parse_hello, msg.parse_control, msg.parse_event):
        parsed_or_none(parse, payload)


@props
@given(shaped_like(HELLO), st.booleans())
@example({"version": 1, "options": {"x": "\ud800"}}, True)  # issue 13 item 4: crashed the session
@example({"version": 1, "options": {"vad": 1e400}}, True)
def test_an_accepted_hello_can_be_echoed_in_ready(hello, ascii_only):
    parsed = parsed_or_none(msg.parse_hello, dumps_any(hello, ascii_only))
    if parsed is None:
        return
    assert msg.parse_hello(msg.encode_hello(parsed)) == parsed
    ready = msg.Ready(session_id="s", input=parsed.input, output=parsed.output, server="t", options=parsed.options)
    assert msg.parse_ready(msg.encode_ready(ready)) == ready


@props
@given(st.sampled_from(CONTROLS).flatmap(shaped_like), st.booleans())
@example({"type": "text", "text": "\ud800"}, True)  # issue 13 item 4: killed the reply task
def test_an_accepted_control_encodes_back_to_itself(control, ascii_only):
    parsed = parsed_or_none(msg.parse_control, dumps_any(control, ascii_only))
    if parsed is not None:
        assert msg.parse_control(msg.encode_control(parsed)) == parsed


@props
@given(st.sampled_from(EVENTS).flatmap(shaped_like), st.booleans())
def test_an_accepted_event_encodes_back(event, ascii_only):
    parsed = parsed_or_none(msg.parse_event, dumps_any(event, ascii_only))
    if parsed is not None:
        msg.parse_event(msg.encode_event(parsed))


@props
@given(deeply_nested_text(), st.sampled_from([b'{"version":1,"options":{"x":%s}}', b'{"type":"text","text":%s}',
                                               b"%s"]))
def test_deep_nesting_is_bad_json_not_a_recursion_error(nested, wrapper):
    for parse in (msg.parse_hello, msg.parse_control):
        try:
            parse(wrapper % nested)
        except ProtocolError as e:
            assert e.code in (ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE)
        else:  # shallow enough to parse: then it is within the limit
            assert nested.count(b"[") + nested.count(b"{") <= 32
