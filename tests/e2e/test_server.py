"""Server behaviour: HTTP routes, auth, limits, idle timeout, SIGTERM drain."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, start_server
from speech_data import librivox_clips
from wire import close_code, expect_error, frame, handshake, hello_payload, raw_connect, recv_frame

from voice.protocol import ErrorCode, MessageType, decode_bye

pytestmark = pytest.mark.e2e


def get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def test_http_routes(server):
    status, body, _ = get(f"{server.http}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, ctype = get(f"{server.http}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert b"voice_sessions_active" in body and b"voice_asr_final_latency_seconds_bucket" in body
    status, body, ctype = get(f"{server.http}/")
    assert status == 200 and ctype.startswith("text/html") and b"<html" in body.lower()
    status, _, ctype = get(f"{server.http}/protocol.js")
    assert status == 200 and ctype.startswith("text/javascript")
    assert get(f"{server.http}/../pyproject.toml")[0] == 404
    assert get(f"{server.http}/nope.html")[0] == 404


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("tok"), "--token", "s3cret")
    yield srv
    srv.stop()


def test_token_is_checked(token_server):
    with raw_connect(token_server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload()))
        assert expect_error(ws)[0] == ErrorCode.AUTH_FAILED
        assert close_code(ws) == ErrorCode.AUTH_FAILED
    with raw_connect(token_server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload(token="wrong")))
        assert expect_error(ws)[0] == ErrorCode.AUTH_FAILED
    with raw_connect(token_server.url) as ws:
        assert handshake(ws, token="s3cret")["session_id"]
    assert get(f"{token_server.http}/metrics")[0] == 401
    assert get(f"{token_server.http}/metrics", token="s3cret")[0] == 200


def test_non_loopback_bind_without_token_refuses_to_start():
    result = subprocess.run([sys.executable, "-m", "voice.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert b"requires server.token" in result.stderr


def test_session_limit_and_idle_timeout(tmp_path):
    srv = start_server(tmp_path, env={"VOICE_SERVER__MAX_SESSIONS": "1", "VOICE_SERVER__IDLE_TIMEOUT_S": "1.5"})
    try:
        with raw_connect(srv.url) as first:
            handshake(first)
            with raw_connect(srv.url) as second:
                assert expect_error(second)[0] == ErrorCode.SERVER_BUSY
                assert close_code(second) == ErrorCode.SERVER_BUSY
            assert expect_error(first)[0] == ErrorCode.IDLE_TIMEOUT
            assert close_code(first) == ErrorCode.IDLE_TIMEOUT
    finally:
        srv.stop()


def test_sigterm_drains_the_turn_in_flight_then_closes_with_1001(tmp_path):
    srv = start_server(tmp_path)
    clip, _ = librivox_clips()[0]
    audio, _ = sf.read(str(clip), dtype="int16")
    got: list = []
    try:
        with raw_connect(srv.url) as ws:
            handshake(ws)
            for pos in range(0, 16000 * 3, 320):  # 3 s of speech: an utterance is in flight
                ws.send(frame(MessageType.AUDIO, audio[pos:pos + 320].tobytes(), timestamp=pos))
            time.sleep(0.5)
            srv.proc.send_signal(signal.SIGTERM)
            # the session keeps working during the drain: the rest of the utterance and its end
            # (3 s of silence: past the longest end-of-turn wait)
            silence = np.zeros(320, np.int16).tobytes()
            sender = threading.Thread(target=lambda: [ws.send(frame(MessageType.AUDIO, silence))
                                                      for _ in range(150)], daemon=True)
            sender.start()
            try:
                while True:
                    f = recv_frame(ws, timeout_s=20)
                    got.append(f)
            except Exception as e:  # the close ends the loop
                code = getattr(getattr(e, "rcvd", None), "code", None)
        assert code == 1001
        events = [json.loads(f.payload) for f in got if f.type == MessageType.EVENT]
        assert any(e["type"] == "transcript_final" and e["text"] for e in events), events
        byes = [decode_bye(f.payload) for f in got if f.type == MessageType.BYE]
        assert byes and byes[-1][0] == ErrorCode.SHUTTING_DOWN
        assert srv.proc.wait(30) == 0
    finally:
        srv.stop()


def test_session_options_from_hello_and_config_update(server):
    with raw_connect(server.url) as ws:
        ready = handshake(ws, options={"vad": {"min_silence_ms": 700}, "agent": "assistant"})
        assert ready["options"]["vad"]["min_silence_ms"] == 700 and ready["options"]["agent"] == "assistant"
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "config", "options": {"vad": {"threshold": 0.7}}})
                      .encode()))
        event = {"type": None}
        while event["type"] != "session_options":  # other events (e.g. the agent's state) may come first
            event = json.loads(recv_frame(ws).payload)
        assert event["options"]["vad"]["threshold"] == 0.7
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "config", "options": {"vad": {"threshold": 7}}})
                      .encode()))
        assert expect_error(ws)[0] == ErrorCode.BAD_MESSAGE  # rejected, session goes on
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload(options={"vad": {"min_speech_ms": -5}})))
        assert expect_error(ws)[0] == ErrorCode.BAD_MESSAGE
        assert close_code(ws) == ErrorCode.BAD_MESSAGE
