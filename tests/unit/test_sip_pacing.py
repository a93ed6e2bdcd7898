"""Outbound RTP pacing: one packet per 20 ms slot on the monotonic clock, no drift, no bursts."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import numpy as np
import pytest

from voice.gateways.sip.call import CallMedia
from voice.gateways.sip.pacer import RtpPacer
from voice.gateways.sip.rtp import parse_rtp
from voice.gateways.sip.sdp import Negotiated

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it everywhere


class FakeClock:
    """Time that moves only when the pacer sleeps (plus any overshoot we inject)."""

    def __init__(self, overshoot_s: float = 0.0):
        self.now = 100.0
        self.overshoot_s = overshoot_s

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay + self.overshoot_s
        await asyncio.sleep(0)


async def run_ticks(pacer: RtpPacer, ticks: list, count: int) -> None:
    pacer.start()
    while len(ticks) < count:
        await asyncio.sleep(0)
    await pacer.stop()


async def test_late_wakeups_do_not_accumulate_into_drift():
    clock = FakeClock(overshoot_s=0.0007)  # every sleep ends 0.7 ms late
    ticks: list[float] = []
    pacer = RtpPacer(lambda skipped: ticks.append(clock()), clock=clock, sleep=clock.sleep)
    await run_ticks(pacer, ticks, 1000)
    ideal = pacer.start_s + np.arange(1000) * 0.020
    assert np.max(np.abs(np.array(ticks) - ideal)) < 0.001  # after 20 s still within one overshoot


async def test_a_stalled_loop_skips_slots_instead_of_bursting():
    clock = FakeClock()
    calls: list[tuple[float, int]] = []

    def tick(skipped: int) -> None:
        calls.append((clock(), skipped))
        if len(calls) == 5:
            clock.now += 0.105  # the loop was blocked for 105 ms

    pacer = RtpPacer(tick, clock=clock, sleep=clock.sleep)
    await run_ticks(pacer, calls, 8)
    # slot 4 ran at 80 ms, then 105 ms blocked: slots 5-8 are past, slot 9 (due 180 ms) goes at 185 ms
    assert calls[5] == (pytest.approx(100.185), 4)  # one call reports the 4 slots it skipped...
    assert calls[6][0] == pytest.approx(100.200)      # ...and the next is back on the 20 ms grid
    assert pacer.skipped == 4 and pacer.slots == 12


class Receiver:
    """A UDP socket read in a thread; each packet is stamped by the kernel when it arrived
    (SO_TIMESTAMPNS), so a busy test machine does not blur the sender's timing."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            self.packets.append((stamp, data))

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


async def send_for(seconds: float, stall_at_s: float | None = None) -> tuple[Receiver, CallMedia]:
    receiver = Receiver()
    media = CallMedia(lambda pcm: None, lambda digit: None, server_in_hz=16000, server_out_hz=16000)
    await media.open("127.0.0.1", range(41000, 41200))
    media.apply(Negotiated("PCMU", 0, 101, "127.0.0.1", receiver.port, "sendrecv"))
    media.play(np.zeros(int(16000 * seconds), np.int16), 0)
    media.start()
    if stall_at_s is not None:
        await asyncio.sleep(stall_at_s)
        time.sleep(0.1)  # block the event loop, as a slow callback would
        await asyncio.sleep(seconds - stall_at_s)
    else:
        await asyncio.sleep(seconds)
    await media.close()
    await asyncio.sleep(0.05)
    receiver.close()
    return receiver, media


async def test_packets_arrive_every_20_ms_with_rtp_timestamps_on_the_wall_clock():
    receiver, media = await send_for(3.0)
    arrivals = np.array([t for t, _ in receiver.packets])
    packets = [parse_rtp(d) for _, d in receiver.packets]
    intervals_ms = np.diff(arrivals) * 1000
    # every slot is either sent or (on a starved machine) skipped, never both, never twice
    assert len(packets) + media.pacer.skipped == media.pacer.slots
    assert [p.seq - packets[0].seq for p in packets] == list(range(len(packets)))
    ts = np.array([p.timestamp - packets[0].timestamp for p in packets])
    assert np.all(np.diff(ts) % 160 == 0) and np.all(np.diff(ts) > 0)
    # drift: where packets arrive vs where their timestamps say they belong, start vs end
    offset_ms = (arrivals - arrivals[0]) * 1000 - ts / 8
    drift_ms = np.median(offset_ms[-10:]) - np.median(offset_ms[:10])
    spans_ms = (arrivals[2:] - arrivals[:-2]) * 1000
    print(f"\npacing: n={len(packets)} skipped={media.pacer.skipped} mean={intervals_ms.mean():.3f} ms "
          f"std={intervals_ms.std():.3f} ms p50|dev|={np.median(np.abs(intervals_ms - 20)):.3f} ms "
          f"p99|dev|={np.percentile(np.abs(intervals_ms - 20), 99):.3f} ms drift={drift_ms:.3f} ms "
          f"min 3-packet span={spans_ms.min():.2f} ms")
    assert abs(drift_ms) < 3
    assert spans_ms.min() > 20  # never three packets within one 20 ms slot: no bursts
    assert np.median(np.abs(intervals_ms - 20)) < 1.0


async def test_after_a_stalled_loop_the_stream_catches_up_in_time_not_in_a_burst():
    receiver, media = await send_for(1.0, stall_at_s=0.5)
    arrivals = np.array([t for t, _ in receiver.packets])
    packets = [parse_rtp(d) for _, d in receiver.packets]
    gap = int(np.argmax(np.diff(arrivals)))
    assert np.diff(arrivals)[gap] >= 0.08  # the stall
    after = arrivals[gap + 1:]
    assert np.sum(after < after[0] + 0.015) <= 1  # no burst of queued packets after it
    jump = packets[gap + 1].timestamp - packets[gap].timestamp
    assert jump >= 160 * 5 and packets[gap + 1].marker  # the timestamp kept real time; new talkspurt
    assert media.pacer.skipped >= 4
