"""Each kind of bad input gets its ERROR code or a clean close, and a neighbour keeps working."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import ServerProcess, start_server
from speech_data import librivox_clips, wer
from websockets.exceptions import ConnectionClosed
from wire import Neighbour, close_code, expect_error, frame, handshake, hello_payload, raw_connect, recv_frame

from voice.protocol import HEADER_SIZE, ErrorCode, MessageType, decode_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    """The real server with overload admission off: these tests open sessions next to a busy
    neighbour on purpose, and what they check is each bad input's answer, not SERVER_BUSY
    (admission has its own tests; the refusal test below fills max_sessions instead)."""
    srv = start_server(tmp_path_factory.mktemp("bad-input"), env={"VOICE_SERVER__ADMISSION__ENABLED": "false"})
    yield srv
    srv.stop()


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


# ---------------------------------------------------------------------- issue 13: hostile JSON, PING, input end


DEEP = b"[" * 1000 + b"]" * 1000  # about 2 KB: the outside tester's frame


def test_json_nested_1000_deep_in_hello_closes_with_bad_json(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload()[:-1] + b',"options":{"x":' + DEEP + b"}}"))
        assert_fatal(ws, ErrorCode.BAD_JSON)


def test_json_nested_1000_deep_in_control_is_bad_json_and_the_session_goes_on(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        ws.send(frame(MessageType.CONTROL, b'{"type":"config","options":{"x":' + DEEP + b"}}"))
        got, message = expect_error(ws)
        assert got == ErrorCode.BAD_JSON and "deeper" in message
        ws.send(frame(MessageType.PING, b"alive"))
        assert recv_frame(ws).payload == b"alive"


def test_a_lone_surrogate_in_hello_options_closes_with_bad_message(server, neighbour):
    with raw_connect(server.url) as ws:
        ws.send(frame(MessageType.HELLO, hello_payload(options={"agent": "\ud800"})))  # json.dumps escapes it
        got, message = expect_error(ws)
        assert got == ErrorCode.BAD_MESSAGE and "invalid unicode" in message
        assert close_code(ws) == ErrorCode.BAD_MESSAGE


def test_a_lone_surrogate_in_a_typed_turn_is_bad_message_and_the_next_turn_is_answered(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "text", "text": "hi \udc00"}).encode()))
        got, message = expect_error(ws)
        assert got == ErrorCode.BAD_MESSAGE and "invalid unicode" in message
        ws.send(frame(MessageType.CONTROL, json.dumps({"type": "text", "text": "Say hello."}).encode()))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the reply task of this session still works
            f = recv_frame(ws, timeout_s=90)
            if f.type == MessageType.EVENT and json.loads(f.payload).get("type") == "agent_text":
                break
        else:
            raise AssertionError("no agent_text after the valid typed turn")


def test_an_oversized_ping_is_bad_message_and_not_answered(server, neighbour):
    with raw_connect(server.url) as ws:
        handshake(ws)
        ws.send(frame(MessageType.PING, b"x" * 200))
        assert expect_error(ws)[0] == ErrorCode.BAD_MESSAGE
        ws.send(frame(MessageType.PING, b"y" * 125))
        pong = recv_frame(ws)
        while pong.type == MessageType.EVENT:
            pong = recv_frame(ws)
        assert pong.type == MessageType.PONG and pong.payload == b"y" * 125  # no PONG for the 200 bytes


@pytest.mark.parametrize(("codec", "rate_hz"), [("opus", 48000), ("pcm16", 8000), ("pcm16", 48000)])
def test_audio_and_a_second_end_of_input_after_end_of_input_are_handled(server, codec, rate_hz):
    # a resampled input crashed the session here ("Input after last input") with close 1000 and no ERROR
    from voice.codecs.opus import OpusEncoder

    encoder = OpusEncoder(rate_hz, frame_ms=20) if codec == "opus" else None
    silence = np.zeros(rate_hz // 50, np.int16)
    chunk = encoder.encode(silence) if encoder else silence.tobytes()
    with raw_connect(server.url) as ws:
        handshake(ws, input={"codec": codec, "sample_rate": rate_hz})
        for _ in range(3):
            for i in range(10):
                ws.send(frame(MessageType.AUDIO, chunk, timestamp=i * len(silence)))
            ws.send(frame(MessageType.CONTROL, b'{"type":"end_of_input"}'))
            ws.send(frame(MessageType.CONTROL, b'{"type":"end_of_input"}'))
            for _ in range(2):
                assert next_event(ws, "input_ended")
        ws.send(frame(MessageType.PING, b"still here"))
        assert recv_frame(ws).payload == b"still here"


def next_event(ws, kind: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        f = recv_frame(ws, timeout_s=timeout_s)
        assert f.type != MessageType.ERROR, decode_error(f.payload)
        if f.type == MessageType.EVENT and (event := json.loads(f.payload))["type"] == kind:
            return event
    raise AssertionError(f"no {kind} event")


def test_a_refusal_before_hello_is_a_client_error_with_server_busy(server):
    # issue 13 item 5: connect() raised ConnectionClosedError when SERVER_BUSY came before HELLO went out
    import asyncio

    from voice.client import ClientError, VoiceClient

    limit = json.load(urllib.request.urlopen(f"{server.http}/healthz"))["max_sessions"]
    with contextlib.ExitStack() as stack:
        for _ in range(limit):
            ws = stack.enter_context(raw_connect(server.url))
            ws.send(frame(MessageType.HELLO, hello_payload()))
            if recv_frame(ws).type != MessageType.READY:
                break  # admission control may refuse before max_sessions: the server is full either way

        async def connect_slowly() -> None:
            client = VoiceClient(server.url)
            send_frame = client.send_frame

            async def late(*args, **kwargs):
                await asyncio.sleep(0.3)  # the refusal arrives before our HELLO leaves
                await send_frame(*args, **kwargs)

            client.send_frame = late
            await client.connect(timeout_s=10)

        with pytest.raises(ClientError) as caught:
            asyncio.run(connect_slowly())
        assert caught.value.code == ErrorCode.SERVER_BUSY


def test_twilio_messages_of_the_wrong_shape_end_the_stream_with_1008_not_a_crash(server):
    # issue 13 item 8: `media` as a string, `dtmf` as a number, `start` as a string
    start = {"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "callSid": "CA1",
             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    bad = [{"event": "media", "media": "AAAA"}, {"event": "dtmf", "dtmf": 5}, {"event": "start", "start": "x"}]
    with raw_connect(server.url.removesuffix("/ws") + "/twilio") as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(json.dumps(start))
        for i in range(40):
            ws.send(json.dumps(bad[i % 3]))
        assert close_code(ws) == 1008
    assert "Traceback" not in server.log()
