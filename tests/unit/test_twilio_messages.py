"""Twilio Media Streams JSON against Twilio's documented examples, and the wrong shapes a peer sends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from voice.gateways.twilio_messages import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioMessageError,
    UnknownEvent,
    clear_message,
    mark_message,
    media_message,
    parse_twilio,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "twilio"
STREAM = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.json").read_text()


def test_every_golden_message_parses_to_its_type():
    expected = {"from_twilio_connected": Connected, "from_twilio_start": Start, "from_twilio_stop": Stop,
                "from_twilio_media_inbound_track": Media, "from_twilio_media_outbound_track": Media,
                "from_twilio_dtmf": Dtmf, "from_twilio_mark": Mark, "to_twilio_media": Media,
                "to_twilio_mark": Mark, "to_twilio_clear": Clear}
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(expected)
    for name, kind in expected.items():
        assert type(parse_twilio(golden(name))) is kind, name


def test_start_carries_the_stream_call_parameters_and_format():
    start = parse_twilio(golden("from_twilio_start"))
    assert isinstance(start, Start)
    assert start.stream_sid == STREAM and start.start.callSid.startswith("CA")
    assert start.start.customParameters == {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}
    assert start.start.mediaFormat.is_mulaw_8k_mono and start.start.tracks == ["inbound"]


def test_media_payload_is_decoded_and_the_track_tells_inbound_from_outbound():
    inbound = parse_twilio(golden("from_twilio_media_inbound_track"))
    outbound = parse_twilio(golden("from_twilio_media_outbound_track"))
    assert isinstance(inbound, Media) and isinstance(outbound, Media)
    assert inbound.media.payload == base64.b64decode("no+JhoaJjpzS") and inbound.inbound
    assert not outbound.inbound


def test_dtmf_mark_and_stop_fields():
    dtmf, mark, stop = (parse_twilio(golden(n)) for n in ("from_twilio_dtmf", "from_twilio_mark", "from_twilio_stop"))
    assert isinstance(dtmf, Dtmf) and dtmf.dtmf.digit == "1"
    assert isinstance(mark, Mark) and mark.mark.name == "my label"
    assert isinstance(stop, Stop) and stop.stop.callSid.startswith("CA")


@pytest.mark.parametrize(("name", "encoded"), [
    ("to_twilio_media", media_message(STREAM, base64.b64decode("a324"))),
    ("to_twilio_mark", mark_message(STREAM, "my label")),
    ("to_twilio_clear", clear_message(STREAM)),
])
def test_our_outbound_messages_equal_the_documented_ones(name, encoded):
    assert json.loads(encoded) == json.loads(golden(name))
    assert next(iter(json.loads(encoded))) == "event"


def test_an_unknown_event_is_a_generic_message_to_ignore():
    message = parse_twilio('{"event":"error","code":1,"streamSid":"MZ1"}')
    assert isinstance(message, UnknownEvent) and message.event == "error"


# The shapes of issue 13 item 8, and their kin: every one is one TwilioMessageError with a reason.
@pytest.mark.parametrize(("raw", "reason"), [
    ('{"event":"media","media":"AAAA"}', "media message: media"),
    ('{"event":"dtmf","dtmf":5}', "dtmf message: dtmf"),
    ('{"event":"start","start":"MZ1"}', "start message: start"),
    ('{"event":"media","media":{"payload":"not base64!"}}', "not valid base64"),
    ('{"event":"media","media":{"payload":7}}', "base64 string"),
    ('{"event":"media","media":{}}', "payload"),
    ('{"event":"dtmf","dtmf":{"digit":"12"}}', "dtmf.digit"),
    ('{"event":"dtmf","dtmf":{"digit":1}}', "dtmf.digit"),
    ('{"event":"mark","mark":{"name":null}}', "mark.name"),
    ('{"event":"start","start":{"customParameters":{"a":1}}}', "customParameters"),
    ('{"event":"start","start":{"mediaFormat":{"sampleRate":"8000"}}}', "sampleRate"),
    ('{"event":"stop","stop":[]}', "stop message: stop"),
    ('{"event":7}', "'event' must be a string"),
    ('{"streamSid":"MZ1"}', "missing 'event'"),
    ('["media"]', "expected a JSON object"),
    ('{"event":"media"', "not JSON"),
    ('{"event":"media","x":' + "[" * 1000 + "]" * 1000 + "}", "nested deeper"),
    ('{"event":"mark","mark":{"name":"\\udc00"}}', "invalid unicode"),
    ('{"event":"media","media":{"payload":"AA=="},"sequenceNumber":1e999}', "out of range"),
])
def test_wrong_shapes_are_one_error_with_a_reason(raw, reason):
    with pytest.raises(TwilioMessageError) as caught:
        parse_twilio(raw)
    assert reason in caught.value.reason


def test_a_binary_websocket_message_is_refused():
    with pytest.raises(TwilioMessageError, match="binary"):
        parse_twilio(b'{"event":"stop"}')
