"""SDP parsing and RFC 3264 offer/answer for G.711 + telephone-event."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice.gateways.sip.message import parse_message
from voice.gateways.sip.sdp import SdpError, accept_answer, answer_offer, build_offer, parse_sdp

GOLDEN = Path(__file__).resolve().parent.parent / "sip" / "golden"


def offer(media: str, extra: str = "", connection: str = "c=IN IP4 10.0.0.5\r\n") -> str:
    return f"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\n{connection}t=0 0\r\n{media}{extra}"


def answer(sdp_text: str, **kw):
    defaults = {"local_host": "127.0.0.1", "local_port": 40000, "session_id": 9, "version": 1}
    return answer_offer(parse_sdp(sdp_text), **(defaults | kw))


def test_baresip_offer_is_answered_with_pcmu_and_telephone_event():
    body = parse_message((GOLDEN / "invite_baresip.sip").read_bytes()).body.decode()
    agreed, text = answer(body)
    assert (agreed.codec, agreed.payload_type, agreed.dtmf_payload_type) == ("PCMU", 0, 101)
    assert (agreed.remote_host, agreed.remote_port, agreed.direction) == ("127.0.0.1", 10084, "sendrecv")
    assert "m=audio 40000 RTP/AVP 0 101\r\n" in text and "a=rtpmap:101 telephone-event/8000" in text
    assert "a=ptime:20" in text and "c=IN IP4 127.0.0.1" in text


def test_the_offerers_preference_order_wins():
    agreed, text = answer(offer("m=audio 5000 RTP/AVP 8 0\r\n"))
    assert agreed.codec == "PCMA" and "m=audio 40000 RTP/AVP 8\r\n" in text


def test_static_payload_types_need_no_rtpmap_and_unknown_codecs_are_skipped():
    agreed, _ = answer(offer("m=audio 5000 RTP/AVP 9 18 0\r\n"))  # G722, G729, then PCMU
    assert agreed.codec == "PCMU"


def test_dynamic_payload_type_for_a_g711_name_is_honoured():
    agreed, text = answer(offer("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 pcma/8000\r\n"))
    assert (agreed.codec, agreed.payload_type) == ("PCMA", 96) and "a=rtpmap:96 PCMA/8000" in text


def test_an_offer_without_g711_is_refused():
    with pytest.raises(SdpError):
        answer(offer("m=audio 5000 RTP/AVP 9 96\r\na=rtpmap:96 opus/48000/2\r\n"))


def test_extra_streams_are_rejected_with_port_zero_in_order():
    agreed, text = answer(offer("m=video 6000 RTP/AVP 96\r\nm=audio 5000 RTP/AVP 0\r\n"))
    lines = [ln for ln in text.split("\r\n") if ln.startswith("m=")]
    assert lines == ["m=video 0 RTP/AVP 96", "m=audio 40000 RTP/AVP 0"]
    assert agreed.remote_port == 5000


@pytest.mark.parametrize(("offered", "ours"), [("sendonly", "recvonly"), ("recvonly", "sendonly"),
                                               ("inactive", "inactive"), ("sendrecv", "sendrecv")])
def test_direction_is_mirrored(offered, ours):
    agreed, text = answer(offer("m=audio 5000 RTP/AVP 0\r\n", f"a={offered}\r\n"))
    assert agreed.direction == ours and f"a={ours}" in text


def test_hold_with_zero_address_stops_our_sending():
    agreed, _ = answer(offer("m=audio 5000 RTP/AVP 0\r\n", connection="c=IN IP4 0.0.0.0\r\n"))
    assert not agreed.we_send and agreed.we_receive


def test_media_level_connection_overrides_session_level():
    agreed, _ = answer(offer("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\n"))
    assert agreed.remote_host == "10.9.9.9"


def test_session_version_goes_into_the_origin_line():
    _, text = answer(offer("m=audio 5000 RTP/AVP 0\r\n"), version=7)
    assert "o=voice 9 7 IN IP4 127.0.0.1" in text


@pytest.mark.parametrize("text", ["", "x=1\r\n", "v=0\r\nc=IN IP4\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
                                  "v=0\r\nnonsense\r\n"])
def test_malformed_sdp_raises(text):
    with pytest.raises(SdpError):
        parse_sdp(text)


def test_our_offer_lists_both_laws_and_the_answer_to_it_is_accepted():
    ours = build_offer(local_host="127.0.0.1", local_port=40002, session_id=1, version=2)
    assert "m=audio 40002 RTP/AVP 0 8 101" in ours
    theirs = offer("m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    agreed = accept_answer(parse_sdp(theirs))
    assert (agreed.codec, agreed.remote_port, agreed.dtmf_payload_type) == ("PCMA", 7000, 101)
