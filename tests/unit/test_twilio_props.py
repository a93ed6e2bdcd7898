"""Properties of the Twilio Media Streams parser under any input: a typed message or one
TwilioMessageError, never another exception; what it accepts encodes back to the same message."""

from __future__ import annotations

import json
from pathlib import Path

from hostile_json import deeply_nested_text, dumps_any, json_values, shaped_like
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.gateways.twilio_messages import (
    MAX_MEDIA_BYTES,
    Media,
    TwilioMessageError,
    UnknownEvent,
    encode_twilio,
    mark_message,
    media_message,
    parse_twilio,
)

GOLDEN = [json.loads(p.read_text()) for p in sorted((Path(__file__).resolve().parent.parent / "golden" / "twilio")
                                                    .glob("*.json"))]
props = settings(max_examples=300, deadline=None)


def parsed_or_none(raw):
    try:
        return parse_twilio(raw)
    except TwilioMessageError as e:
        assert e.reason and "\n" not in e.reason
        return None


@props
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50), json_values.map(json.dumps),
                 deeply_nested_text().map(lambda b: b.decode())))
def test_any_text_is_a_message_or_one_error(raw):
    parsed_or_none(raw)


@props
@given(st.sampled_from(GOLDEN).flatmap(shaped_like), st.booleans())
def test_an_accepted_message_of_any_shape_encodes_back_to_itself(message, ascii_only):
    try:
        raw = dumps_any(message, ascii_only).decode("utf-8")
    except UnicodeDecodeError:
        return  # a lone surrogate written raw is not text a WebSocket can carry
    parsed = parsed_or_none(raw)
    if parsed is not None and not isinstance(parsed, UnknownEvent):
        assert parse_twilio(encode_twilio(parsed)) == parsed


@props
@given(st.text(max_size=40), st.binary(max_size=MAX_MEDIA_BYTES))
def test_outbound_media_round_trips_its_audio(stream_sid, mulaw):
    message = parse_twilio(media_message(stream_sid, mulaw))
    assert isinstance(message, Media) and message.media.payload == mulaw and message.streamSid == stream_sid


@props
@given(st.text(max_size=256))
def test_outbound_mark_round_trips_its_name(name):
    assert parse_twilio(mark_message("MZ1", name)).mark.name == name
