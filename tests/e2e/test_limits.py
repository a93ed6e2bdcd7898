"""Per-session limits through the real server: typed turns are rate limited (RATE_LIMITED, the
session and a neighbour go on), and a Twilio stream whose `start` is malformed is refused at once."""

from __future__ import annotations

import json
import time

import pytest
from speech_data import librivox_clips, wer
from wire import Neighbour, close_code, frame, handshake, raw_connect, recv_frame

from voice.protocol import ErrorCode, MessageType, decode_error

pytestmark = pytest.mark.e2e


def test_typed_turns_beyond_the_rate_limit_get_rate_limited_and_the_session_goes_on(server):
    clip, ref = librivox_clips()[4]
    with Neighbour(server.url, clip) as neighbour, raw_connect(server.url) as ws:
        handshake(ws)
        for i in range(12):  # a burst well past server.turn_burst (5)
            ws.send(frame(MessageType.CONTROL, json.dumps({"type": "text", "text": f"Say the number {i}."}).encode()))
        errors, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline and len(errors) < 7:
            f = recv_frame(ws, timeout_s=20)
            if f.type == MessageType.ERROR:
                errors.append(decode_error(f.payload)[0])
        assert errors and set(errors) == {ErrorCode.RATE_LIMITED}, errors
        assert len(errors) >= 12 - 5 - 1  # the burst passed (one more may have refilled), the rest did not
        time.sleep(2.5)  # a token refills: the session still takes turns
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "text", "text": "Hello?"}).encode()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            f = recv_frame(ws, timeout_s=60)
            assert f.type != MessageType.ERROR, decode_error(f.payload)
            if f.type == MessageType.EVENT and json.loads(f.payload).get("type") == "input_ended":
                break
            if f.type == MessageType.EVENT and (e := json.loads(f.payload))["type"] == "agent_text" \
                    and e["final"] and "Hello" not in e["text"]:
                break
    assert neighbour.error is None and wer(ref, " ".join(neighbour.finals)) <= 0.15, neighbour.finals


def test_a_twilio_stream_with_a_malformed_start_is_refused_with_1008_at_once(server):
    with raw_connect(server.url.removesuffix("/ws") + "/twilio") as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        sent = time.monotonic()
        ws.send(json.dumps({"event": "start", "start": "not an object"}))
        assert close_code(ws) == 1008
        assert time.monotonic() - sent < 3  # not after the 10 s wait for a start
    assert "Traceback" not in server.log()
