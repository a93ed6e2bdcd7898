"""The adaptive jitter buffer: order, concealment, late packets and depth that follows jitter."""

from __future__ import annotations

import numpy as np

from voice.gateways.sip.jitter import JitterBuffer, JitterSettings

N = 160  # 20 ms at 8 kHz


def frame(value: int) -> np.ndarray:
    return np.full(N, value, np.int16)


def fill(jb: JitterBuffer, indices, start_s: float = 0.0, spacing_s: float = 0.02) -> None:
    for i, k in enumerate(indices):
        jb.put(k * N, frame(100 + k), start_s + i * spacing_s)


def values(frames) -> list[int]:
    return [int(f[0]) for f in frames]


def test_waits_for_the_target_depth_before_playing():
    jb = JitterBuffer()
    jb.put(0, frame(100), 0.0)
    assert values([jb.pop()]) == [0]  # 20 ms buffered < 40 ms minimum: silence while it fills


def test_reordered_packets_come_out_in_timestamp_order():
    jb = JitterBuffer()
    fill(jb, [1, 0, 3, 2, 4, 5])
    assert values(jb.pop() for _ in range(6)) == [100, 101, 102, 103, 104, 105]


def test_a_lost_packet_is_concealed_by_a_quieter_repeat():
    jb = JitterBuffer()
    for k in [0, 1, 2, 4, 5]:
        jb.put(k * N, frame(1000), k * 0.02)
    out = values(jb.pop() for _ in range(5))
    assert out == [1000, 1000, 1000, 500, 1000]
    assert jb.stats.lost_frames == 1


def test_a_long_loss_fades_to_silence():
    jb = JitterBuffer()
    for k in [0, 1, 2, 9]:
        jb.put(k * N, frame(1000), k * 0.02)
    out = values(jb.pop() for _ in range(10))
    assert out[3:7] == [500, 250, 125, 0]  # conceal_frames=3, then silence


def test_a_packet_after_its_slot_is_dropped_as_late_and_raises_the_target():
    jb = JitterBuffer()
    fill(jb, [0, 1, 2, 3])
    before = jb.target_ms
    for _ in range(4):
        jb.pop()
    assert jb.put(1 * N, frame(7), 0.2) is False
    assert jb.stats.late == 1 and jb.target_ms > before


def test_duplicates_are_dropped():
    jb = JitterBuffer()
    jb.put(0, frame(1), 0.0)
    assert jb.put(0, frame(1), 0.001) is False and jb.stats.duplicates == 1


def test_an_underrun_conceals_without_skipping_audio():
    jb = JitterBuffer()
    fill(jb, [0, 1])
    assert values(jb.pop() for _ in range(3)) == [100, 101, 50]  # nothing after 1: wait
    jb.put(2 * N, frame(102), 0.1)
    assert values([jb.pop()]) == [102]  # frame 2 was delayed, not lost
    assert jb.stats.underruns == 1 and jb.stats.lost_frames == 0


def test_target_depth_grows_with_jitter_and_shrinks_when_it_calms():
    jb = JitterBuffer()
    rng = np.random.default_rng(1)
    t = 0.0
    for k in range(200):  # arrivals spread by up to 60 ms around their due time
        jb.put(k * N, frame(1), k * 0.02 + rng.uniform(0, 0.06))
    deep = jb.target_ms
    for k in range(200, 600):  # then a steady 20 ms
        t = k * 0.02 + 0.06
        jb.put(k * N, frame(1), t)
    assert deep >= 80, deep
    assert jb.target_ms == JitterSettings().min_depth_ms


def test_a_deep_buffer_drops_frames_down_to_the_target():
    jb = JitterBuffer()
    fill(jb, range(30), spacing_s=0.0)  # a burst: 600 ms arrives at once
    jb._jitter_samples = 0.0  # what a steady stream would show
    for _ in range(200):
        jb.pop()
        if jb.depth_ms <= jb.target_ms + 20:
            break
    assert jb.stats.dropped_frames > 0
    assert jb.depth_ms <= jb.target_ms + 20


def test_any_packet_duration_plays_as_20_ms_frames():
    jb = JitterBuffer()
    for k in range(4):  # 30 ms packets (240 samples), like sipp's built-in pcap
        jb.put(k * 240, np.full(240, k + 1, np.int16), k * 0.03)
    out = np.concatenate([jb.pop() for _ in range(6)])
    np.testing.assert_array_equal(out[:960], np.repeat(np.arange(1, 5), 240))


def test_timestamps_wrapping_past_2_32_stay_in_order():
    jb = JitterBuffer()
    base = 2**32 - N
    jb.put(base, frame(1), 0.0)
    jb.put(0, frame(2), 0.02)
    jb.put(N, frame(3), 0.04)
    assert values(jb.pop() for _ in range(3)) == [1, 2, 3]
