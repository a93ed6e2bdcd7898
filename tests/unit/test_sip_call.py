"""One call's media: outbound queue and playback position, barge-in flush, RTP in -> audio and DTMF."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from voice.codecs.g711 import ulaw_decode, ulaw_encode
from voice.gateways.sip.call import CallMedia, OutboundAudio
from voice.gateways.sip.dtmf import key_press_payloads
from voice.gateways.sip.rtp import RtpPacket, RtpStream, parse_rtp
from voice.gateways.sip.sdp import Negotiated


def test_played_position_follows_what_was_taken_not_what_was_queued():
    out = OutboundAudio()
    out.push(np.ones(160, np.int16), 0, 320)   # server positions at 16 kHz
    out.push(np.ones(160, np.int16), 320, 640)
    out.take(80)
    assert out.played_samples == 160  # half way through the first chunk
    out.take(160)
    assert out.played_samples == 480


def test_take_pads_the_end_of_a_reply_and_is_none_when_idle():
    out = OutboundAudio()
    out.push(np.full(100, 7, np.int16), 0, 200)
    frame = out.take(160)
    assert list(frame[:100]) == [7] * 100 and not frame[100:].any()
    assert out.take(160) is None


def test_clear_drops_everything_queued_and_keeps_the_played_position():
    out = OutboundAudio()
    out.push(np.ones(480, np.int16), 0, 960)
    out.take(160)
    assert out.clear() == 320
    assert out.take(160) is None and out.played_samples == 320  # a third of the chunk was sent
    out.push(np.ones(160, np.int16), 1600, 1920)
    out.take(160)
    assert out.played_samples == 1920


class Phone:
    """A UDP socket standing in for the phone's RTP endpoint."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def received(self) -> list[RtpPacket]:
        out = []
        while True:
            try:
                out.append(parse_rtp(self.sock.recv(2048)))
            except BlockingIOError:
                return out


async def open_call(phone: Phone, heard: list, digits: list) -> CallMedia:
    media = CallMedia(heard.append, digits.append, server_in_hz=16000, server_out_hz=16000)
    await media.open("127.0.0.1", range(41400, 41500))
    media.apply(Negotiated("PCMU", 0, 101, "127.0.0.1", phone.port, "sendrecv"))
    media.start()
    return media


async def test_phone_audio_arrives_at_the_server_rate_and_dtmf_as_digits():
    phone, heard, digits = Phone(), [], []
    media = await open_call(phone, heard, digits)
    stream = RtpStream(0)
    tone = (np.sin(2 * np.pi * 400 * np.arange(8000) / 8000) * 8000).astype(np.int16)
    for i in range(50):
        phone.sock.sendto(stream.packet(ulaw_encode(tone[i * 160:(i + 1) * 160]), 160).to_bytes(),
                          ("127.0.0.1", media.port))
        await asyncio.sleep(0.02)
    for payload, marker in key_press_payloads("#"):
        phone.sock.sendto(stream.event_packet(payload, 9999, payload_type=101, marker=marker).to_bytes(),
                          ("127.0.0.1", media.port))
    await asyncio.sleep(0.2)
    await media.close()
    audio = np.concatenate(heard)
    assert digits == ["#"]
    assert len(audio) >= 16000 * 0.9  # ~1 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(audio[4000:12000].astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 400) < 5  # the 400 Hz tone, upsampled intact


async def test_barge_in_flush_stops_the_agent_within_one_packet():
    phone, heard, digits = Phone(), [], []
    media = await open_call(phone, heard, digits)
    media.play(np.full(16000 * 2, 8000, np.int16), 0)  # 2 s of agent audio
    await asyncio.sleep(0.3)
    media.flush()
    flushed_at = len(phone.received())
    await asyncio.sleep(0.2)
    after = phone.received()
    await media.close()
    loud = [p for p in after if np.abs(ulaw_decode(p.payload).astype(np.int32)).max() > 1000]
    assert flushed_at > 5 and len(loud) <= 1
    assert media.stats.flushed_samples > 8000  # most of the 2 s never went out
    assert 0 < media.played_samples < 32000
