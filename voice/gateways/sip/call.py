"""The media of one phone call: RTP in and out, G.711, resampling, pacing, DTMF, playback position.

In:  RTP -> G.711 decode -> JitterBuffer -> (every 20 ms) -> resample 8 kHz -> `on_audio` at the
     server's input rate. Telephone-event packets -> `on_dtmf`.
Out: `play()` (server audio at its output rate) -> resample to 8 kHz -> OutboundAudio ->
     (every 20 ms, RtpPacer) -> G.711 -> one RTP packet. Silence is sent while there is nothing
     to say, so the phone's clock and any NAT binding stay alive.
`flush()` drops queued outbound audio at once (barge-in); `played_samples` is the server-stream
position of what has actually been sent to the phone (for playback marks).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voice.codecs.g711 import G711Codec
from voice.codecs.pcm import float32_to_int16, int16_to_float32
from voice.codecs.resample import StreamResampler
from voice.gateways.sip.address import usable_destination
from voice.gateways.sip.dtmf import DtmfReceiver
from voice.gateways.sip.jitter import JitterBuffer
from voice.gateways.sip.pacer import RtpPacer
from voice.gateways.sip.rtp import RtpError, RtpStream, parse_rtp
from voice.gateways.sip.sdp import Negotiated

log = logging.getLogger(__name__)

RATE_HZ = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE_HZ * FRAME_MS // 1000


class OutboundAudio:
    """8 kHz samples waiting for their RTP slot, and which span of the server's output stream each
    chunk carries, so the played position is known to the sample (interpolated inside a chunk)."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._spans: deque[tuple[int, int, int, int]] = deque()  # queue start/end, server start/end
        self._pushed = 0   # samples ever queued
        self._taken = 0    # samples ever taken
        self.played_samples = 0  # server-stream position reached by what has been sent

    @property
    def queued_samples(self) -> int:
        return self._queued

    def push(self, pcm: np.ndarray, server_start: int, server_end: int) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self._queued += len(pcm)
        self._spans.append((self._pushed, self._pushed + len(pcm), server_start, server_end))
        self._pushed += len(pcm)

    def take(self, n: int) -> np.ndarray | None:
        """n samples for the next packet (zero-padded at the end of a reply), None when idle."""
        if not self._queued:
            self._advance()
            return None
        out = np.zeros(n, np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            k = min(n - filled, len(chunk))
            out[filled:filled + k] = chunk[:k]
            filled += k
            if k == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[k:]
        self._queued -= filled
        self._taken += filled
        self._advance()
        return out

    def _advance(self) -> None:
        while self._spans:
            q0, q1, s0, s1 = self._spans[0]
            if self._taken >= q1:
                self.played_samples = max(self.played_samples, s1)
                self._spans.popleft()
                continue
            if self._taken > q0:
                self.played_samples = max(self.played_samples, s0 + (self._taken - q0) * (s1 - s0) // (q1 - q0))
            return

    def clear(self) -> int:
        """Drop everything queued; returns the samples dropped."""
        dropped = self._queued
        self._chunks.clear()
        self._spans.clear()
        self._taken = self._pushed
        self._queued = 0
        return dropped


@dataclass
class MediaStats:
    packets_in: int = 0
    packets_out: int = 0
    bad_packets: int = 0
    dtmf_digits: str = ""
    flushed_samples: int = 0


class CallMedia(asyncio.DatagramProtocol):
    """One call's RTP endpoint. `open()` binds it; `start()` after the SDP answer; `close()` at the end."""

    def __init__(self, on_audio: Callable[[np.ndarray], None], on_dtmf: Callable[[str], None], *,
                 server_in_hz: int, server_out_hz: int, rtp_timeout_s: float = 30.0,
                 on_timeout: Callable[[], None] | None = None):
        self.on_audio, self.on_dtmf, self.on_timeout = on_audio, on_dtmf, on_timeout
        #: Called when the last sample of an agent segment has gone out (ms of audio sent in it).
        self.on_segment_sent: Callable[[float], None] | None = None
        self._segment_open = False
        self._segment_samples = 0
        self.server_in_hz, self.server_out_hz = server_in_hz, server_out_hz
        self.rtp_timeout_s = rtp_timeout_s
        self.stats = MediaStats()
        self.jitter = JitterBuffer()
        self.outbound = OutboundAudio()
        self.pacer = RtpPacer(self._tick, frame_ms=FRAME_MS)
        self.negotiated: Negotiated | None = None
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._family = socket.AF_INET
        self._remote: tuple[str, int] | None = None
        self._latched = False
        self._codec: G711Codec | None = None
        self._stream: RtpStream | None = None
        self._dtmf = DtmfReceiver()
        # float32 inside: soxr dithers int16 output, and dither would turn silence into hiss
        self._up = StreamResampler(RATE_HZ, server_in_hz)
        self._down = StreamResampler(server_out_hz, RATE_HZ)
        self._last_rx_s = time.monotonic()
        self._silence: bytes = b""
        self.closed = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self, host: str, ports: range) -> None:
        """Bind the first free even port of `ports` (odd ones are RTCP's by convention)."""
        loop = asyncio.get_running_loop()
        for port in ports:
            if port % 2:
                continue
            try:
                self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
            except OSError:
                continue
            self.port = port
            self._family = self._transport.get_extra_info("socket").family
            return
        raise OSError(f"no free RTP port in {ports.start}-{ports.stop - 1}")

    def apply(self, negotiated: Negotiated) -> None:
        """Use an offer/answer's result: the codec and where to send (also on re-INVITE)."""
        self.negotiated = negotiated
        if self._codec is None or self._codec.name != negotiated.codec:
            self._codec = G711Codec(negotiated.codec)
            self._silence = bytes([self._codec.silence_byte]) * FRAME_SAMPLES
        if self._stream is None:
            self._stream = RtpStream(negotiated.payload_type)
        self._stream.payload_type = negotiated.payload_type
        if not self._latched:
            # None for what we cannot send to (a host name, port 0, another family): then we send
            # nothing until the phone's first packet shows where it is (symmetric RTP latching)
            self._remote = usable_destination((negotiated.remote_host, negotiated.remote_port), self._family)

    def start(self) -> None:
        assert self.negotiated is not None, "apply() an answer first"
        self._last_rx_s = time.monotonic()
        self.pacer.start()

    async def close(self) -> None:
        self.closed = True
        await self.pacer.stop()
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ outbound

    def play(self, pcm: np.ndarray, server_start: int, *, segment_end: bool = False) -> None:
        """Queue server audio (int16 at server_out_hz) that starts at stream position `server_start`."""
        out = self._down.process(int16_to_float32(pcm))
        if segment_end:  # the reply is over: push out what the resampler still holds back
            out = np.concatenate([out, self._down.flush()])
            self._down = StreamResampler(self.server_out_hz, RATE_HZ)
        self.outbound.push(float32_to_int16(out), server_start, server_start + len(pcm))
        self._segment_open = not segment_end

    def flush(self) -> None:
        """Barge-in: what has not been sent yet is never sent."""
        self.stats.flushed_samples += self.outbound.clear()
        self._segment_open = False
        self._down = StreamResampler(self.server_out_hz, RATE_HZ)

    @property
    def played_samples(self) -> int:
        return self.outbound.played_samples

    def _tick(self, skipped: int) -> None:
        if self.closed:
            return
        assert self._stream is not None and self._codec is not None
        if skipped:
            self._stream.skip(skipped * FRAME_SAMPLES)
        pcm = self.outbound.take(FRAME_SAMPLES)
        if pcm is not None:
            self._segment_samples += FRAME_SAMPLES
        elif self._segment_samples and not self._segment_open:
            if self.on_segment_sent is not None:
                self.on_segment_sent(self._segment_samples * 1000 / RATE_HZ)
            self._segment_samples = 0
        n = self.negotiated
        if n is not None and n.we_send and self._remote is not None and self._transport is not None:
            payload = self._silence if pcm is None else self._codec.encode(pcm)
            self._transport.sendto(self._stream.packet(payload, FRAME_SAMPLES).to_bytes(), self._remote)
            self.stats.packets_out += 1
        for _ in range(1 + skipped):
            up = self._up.process(int16_to_float32(self.jitter.pop()))
            if len(up):
                self.on_audio(float32_to_int16(up))
        self._check_timeout()

    def _check_timeout(self) -> None:
        receiving = self.negotiated is not None and self.negotiated.we_receive
        if receiving and time.monotonic() - self._last_rx_s > self.rtp_timeout_s and self.on_timeout:
            callback, self.on_timeout = self.on_timeout, None
            callback()

    # ------------------------------------------------------------------ inbound (DatagramProtocol)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.bad_packets += 1
            return
        n = self.negotiated
        if n is None or self._codec is None:
            return
        if not self._latched:  # symmetric RTP: answer where the phone really sends from (NAT)
            self._remote, self._latched = addr[:2], True
        self._last_rx_s = time.monotonic()
        self.stats.packets_in += 1
        if packet.payload_type == n.payload_type:
            self.jitter.put(packet.timestamp, self._codec.decode(packet.payload), self._last_rx_s)
        elif packet.payload_type == n.dtmf_payload_type:
            digit = self._dtmf.feed(packet.timestamp, packet.payload)
            if digit:
                self.stats.dtmf_digits += digit
                self.on_dtmf(digit)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error: %s", exc)  # ICMP port unreachable while the phone starts up
