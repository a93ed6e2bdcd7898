"""Each kind of bad input gets its ERROR code or a clean close, and a neighbour keeps working."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
from speech_data import librivox_clips, wer
from websockets.exceptions import ConnectionClosed
from wire import Neighbour, close_code, expect_error, frame, handshake, hello_payload, raw_connect, recv_frame

from voice.protocol import HEADER_SIZE, ErrorCode, MessageType

pytestmark = pytest.mark.e2e


@pytest.fixture
def neighbour(server) -> Iterator[Neighbour]:
    """Streams a 3 s clip while the test misbehaves; afterwards its transcript must be right."""
    clip, ref = librivox_clips()[4]
    with Neighbour(server.url, clip) as n:
        time.sleep(0.3)
        yield n
    assert n.error is None, repr(n.error)
    assert n.finals and wer(ref, " ".join(n.finals)) <= 0.15, n.finals


def assert_fatal(ws, code: ErrorCode) -> None:
    got, message = expect_error(ws)
    assert got == code, (ErrorCode(got).name, message)
    assert close_code(ws) == code


def test_random_bytes_get_an_error_and_a_close(server, neighbour):
    rng = random.Random(7)
    for _ in range(5):
        with raw_connect(server.url) as ws:
            ws.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
            got, _ = expect_error(ws)
            assert got in (ErrorCode.BAD_FRAME, ErrorCode.LENGTH_MISMATCH, ErrorCode.TOO_LARGE,
                           ErrorCode.HANDSHAKE_REQUIRED)
            assert close_code(ws) == got


def test_truncated_header(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload())[: HEADER_SIZE - 5])
        assert_fatal(ws, ErrorCode.BAD_FRAME)


def test_wrong_protocol_version(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload(version=99)))
        assert_fatal(ws, ErrorCode.UNSUPPORTED_VERSION)


def test_length_field_of_4_gb_is_refused_from_the_header(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        bad = bytearray(frame(MessageType.AUDIO, b"\x00" * 64))
        bad[14:18] = (0xFFFFFFFF).to_bytes(4, "big")
        ws.send(bytes(bad))
        got, _ = expect_error(ws)
        assert got == ErrorCode.TOO_LARGE
        ws.send(frame(MessageType.PING, b"still there?"))  # non-fatal after READY
        assert recv_frame(ws).payload == b"still there?"


def test_websocket_message_over_the_limit_is_closed_with_1009(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        with contextlib.suppress(ConnectionClosed):
            ws.send(frame(MessageType.AUDIO, b"\x00" * 2_000_000))
        assert close_code(ws) == 1009  # websockets refuses it from the frame header


def test_audio_before_hello(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.AUDIO, b"\x00\x00" * 320))
        assert_fatal(ws, ErrorCode.HANDSHAKE_REQUIRED)


def test_invalid_json_in_hello_closes(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, b'{"version": 1, "input": '))
        assert_fatal(ws, ErrorCode.BAD_JSON)


def test_invalid_json_in_control_is_answered_and_the_session_goes_on(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        ws.send(frame(MessageType.CONTROL, b"{not json"))
        assert expect_error(ws)[0] == ErrorCode.BAD_JSON
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "no_such_control"}).encode()))
        assert expect_error(ws)[0] == ErrorCode.BAD_MESSAGE
        ws.send(frame(MessageType.AUDIO, b"\x01\x02\x03"))  # odd PCM16 length
        assert expect_error(ws)[0] == ErrorCode.BAD_AUDIO
        ws.send(frame(0x7E, b"from the future"))  # unknown type: ignored
        ws.send(frame(MessageType.PING, b"ok"))
        assert recv_frame(ws).type == MessageType.PONG


def test_garbage_opus_packet_is_bad_audio(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws, input={"codec": "opus", "sample_rate": 48000})
        ws.send(frame(MessageType.AUDIO, b"\xff" * 40))
        assert expect_error(ws)[0] == ErrorCode.BAD_AUDIO


def test_too_many_errors_ends_the_session(server):
    with raw_connect(server.url) as ws:
        handshake(ws)
        for _ in range(25):
            ws.send(frame(MessageType.CONTROL, b"{"))
        codes = []
        try:
            while True:
                codes.append(expect_error(ws)[0])
        except Exception:
            pass
        assert codes[-1] == ErrorCode.TOO_MANY_ERRORS


def test_client_vanishing_mid_utterance(server, neighbour):
    clip, _ = librivox_clips()[0]
    import soundfile as sf

    audio, _ = sf.read(str(clip), dtype="int16")
    with raw_connect(server.url) as ws:
        handshake(ws)
        for pos in range(0, 16000 * 2, 320):  # 2 s of speech, then the socket dies without a close
            ws.send(frame(MessageType.AUDIO, audio[pos:pos + 320].tobytes(), timestamp=pos))
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        health = json.load(urllib.request.urlopen(f"{server.http}/healthz"))
        if health["sessions"] <= 1:  # only the neighbour is left
            break
        time.sleep(0.2)
    assert health["sessions"] <= 1
    assert "session crashed" not in server.log()
