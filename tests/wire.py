"""Raw-socket helpers for tests that must send what a well-behaved client never would."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from voice.client import ClientOptions, VoiceClient
from voice.protocol import Frame, MessageType, decode_error, decode_frame, encode_frame


def raw_connect(url: str) -> ClientConnection:
    return connect(url, compression=None, max_size=1 << 22, open_timeout=10)


def hello_payload(version: int = 1, **fields) -> bytes:
    hello = {"version": version, "input": {"codec": "pcm16", "sample_rate": 16000},
             "output": {"codec": "pcm16", "sample_rate": 16000}, **fields}
    return json.dumps(hello).encode()


def frame(kind: int, payload: bytes = b"", seq: int = 0, timestamp: int = 0) -> bytes:
    return encode_frame(Frame(kind, 0, seq, timestamp, payload))


def recv_frame(ws: ClientConnection, timeout_s: float = 10) -> Frame:
    return decode_frame(ws.recv(timeout=timeout_s), max_payload_bytes=1 << 22)


def handshake(ws: ClientConnection, **fields) -> dict:
    ws.send(frame(MessageType.HELLO, hello_payload(**fields)))
    reply = recv_frame(ws)
    assert reply.type == MessageType.READY, reply
    return json.loads(reply.payload)


def expect_error(ws: ClientConnection) -> tuple[int, str]:
    """The next non-event frame must be an ERROR; returns (code, message)."""
    while True:
        f = recv_frame(ws)
        if f.type == MessageType.ERROR:
            return decode_error(f.payload)
        assert f.type == MessageType.EVENT, f"expected ERROR, got type {f.type:#x}"


def close_code(ws: ClientConnection, timeout_s: float = 10) -> int | None:
    """Wait for the server to close; returns its close code."""
    try:
        while True:
            ws.recv(timeout=timeout_s)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


class Neighbour:
    """A well-behaved client streaming a clip in real time on its own thread, to prove that
    what another client does to the server does not disturb it."""

    def __init__(self, url: str, clip: Path):
        self.url, self.clip = url, clip
        self.finals: list[str] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Neighbour:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(120)

    def _run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as e:  # reported by the test
            self.error = e

    async def _stream(self) -> None:
        import soundfile as sf

        audio, rate = sf.read(str(self.clip), dtype="int16")
        audio = np.concatenate([np.zeros(rate // 2, np.int16), audio, np.zeros(rate, np.int16)])
        client = VoiceClient(self.url, ClientOptions(input_codec="pcm16", input_rate_hz=rate,
                                                     output_codec="pcm16", output_rate_hz=rate))
        await client.connect()
        step = rate // 50
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, pos in enumerate(range(0, len(audio), step)):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
            await client.send_audio(audio[pos:pos + step])
        await client.end_input()
        async for item in client.messages():
            kind = getattr(item, "type", None)
            if kind == "transcript_final" and item.text:
                self.finals.append(item.text)
            if kind == "input_ended":
                break
        await client.close()
