"""AudioOut (resample, fades, 20 ms frames, codecs, flags), TextTimeline and Pacer."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from voice.codecs.opus import OpusDecoder
from voice.codecs.pcm import bytes_to_float32
from voice.pipeline.audio_out import AudioOut, OutFrame, Pacer, TextTimeline
from voice.protocol import Flags

TTS_RATE_HZ = 22050


def tone(seconds: float, rate_hz: int = TTS_RATE_HZ, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (amplitude * (np.sin(2 * np.pi * 300 * t) + np.sin(2 * np.pi * 1100 * t)) / 2).astype(np.float32)


def one_reply(out: AudioOut, pieces: list[tuple[np.ndarray, int]], texts: list[str] | None = None) -> list[OutFrame]:
    frames: list[OutFrame] = []
    for i, (audio, rate) in enumerate(pieces):
        # Chunks of uneven size, as a TTS would deliver them.
        for start in range(0, len(audio), 3001):
            frames += out.push(audio[start:start + 3001], rate)
        frames += out.end_piece(texts[i] if texts else "")
    return frames + out.end_reply()


def pcm16(frames: list[OutFrame]) -> np.ndarray:
    """What a client decodes from PCM16 payloads."""
    return np.concatenate([bytes_to_float32(f.payload) for f in frames])


# ---------------------------------------------------------------------------------------- AudioOut

@pytest.mark.parametrize("rate_hz", [48000, 24000, 16000, 8000])
def test_pcm16_frames_are_exactly_20_ms(rate_hz: int) -> None:
    frames = one_reply(AudioOut("pcm16", rate_hz), [(tone(0.37), TTS_RATE_HZ)])
    assert {len(f.payload) for f in frames} == {2 * rate_hz // 50}
    assert {f.samples for f in frames} == {rate_hz // 50}


@pytest.mark.parametrize("rate_hz", [48000, 24000, 16000, 8000])
def test_opus_frames_decode_to_exactly_20_ms(rate_hz: int) -> None:
    frames = one_reply(AudioOut("opus", rate_hz), [(tone(0.37), TTS_RATE_HZ)])
    decoder = OpusDecoder(rate_hz)
    assert {len(decoder.decode(f.payload)) for f in frames} == {rate_hz // 50}


def test_all_resampled_audio_comes_out_and_the_last_frame_is_padded() -> None:
    frames = one_reply(AudioOut("pcm16", 48000), [(tone(0.5), TTS_RATE_HZ)])
    expected = round(0.5 * 48000)
    assert len(frames) == -(-expected // 960)  # ceil: nothing lost, at most one padded frame


def test_timestamps_are_contiguous_across_replies() -> None:
    out = AudioOut("pcm16", 16000)
    frames = one_reply(out, [(tone(0.21), TTS_RATE_HZ)]) + one_reply(out, [(tone(0.13), TTS_RATE_HZ)])
    assert [f.timestamp_samples for f in frames] == [320 * i for i in range(len(frames))]


def test_segment_flags_mark_the_first_and_last_frame_of_each_reply() -> None:
    out = AudioOut("pcm16", 16000)
    first = one_reply(out, [(tone(0.2), TTS_RATE_HZ)])
    second = one_reply(out, [(tone(0.2), TTS_RATE_HZ)])
    for index, frames in enumerate([first, second]):
        assert frames[0].flags == Flags.SEGMENT_START
        assert frames[-1].flags == Flags.SEGMENT_END
        assert all(f.flags == Flags.NONE for f in frames[1:-1])
        assert {f.segment for f in frames} == {index}


def test_a_one_frame_reply_carries_both_flags() -> None:
    frames = one_reply(AudioOut("pcm16", 16000), [(tone(0.005), TTS_RATE_HZ)])
    assert [f.flags for f in frames] == [Flags.SEGMENT_START | Flags.SEGMENT_END]


def test_an_empty_reply_sends_nothing() -> None:
    out = AudioOut("pcm16", 16000)
    assert out.end_reply() == []


def test_a_reply_without_audio_uses_no_segment_index() -> None:
    out = AudioOut("pcm16", 16000)
    out.end_piece("🎉")  # a piece that produced no audio
    assert out.end_reply() == []
    assert one_reply(out, [(tone(0.1), TTS_RATE_HZ)])[0].segment == 0


def test_piece_starts_and_ends_with_a_10_ms_fade() -> None:
    dc = np.full(4800, 0.5, np.float32)  # 200 ms at the session rate: no resampling
    samples = pcm16(one_reply(AudioOut("pcm16", 24000), [(dc, 24000)]))
    fade = 240
    assert abs(samples[0]) < 1e-3 and abs(samples[4799]) < 2e-3
    assert np.all(np.diff(samples[:fade]) >= -1e-4)       # rising over the first 10 ms
    assert np.all(np.diff(samples[4800 - fade:4800]) <= 1e-4)  # falling over the last 10 ms
    assert np.allclose(samples[fade:4800 - fade], 0.5, atol=1e-3)  # untouched in between


def test_pieces_join_without_a_jump() -> None:
    out = AudioOut("pcm16", 24000)
    pieces = [(np.full(2400, 0.8, np.float32), 24000), (np.full(2400, -0.8, np.float32), 24000)]
    samples = pcm16(one_reply(out, pieces))
    assert np.max(np.abs(np.diff(samples))) < 0.02  # a click would be a jump of ~1.6


def test_opus_round_trip_matches_the_input() -> None:
    frames = one_reply(AudioOut("opus", 48000), [(tone(0.6), TTS_RATE_HZ)])
    reference = np.concatenate([f.pcm for f in frames])
    decoder = OpusDecoder(48000)
    decoded = np.concatenate([decoder.decode(f.payload) for f in frames]).astype(np.float32) / 32768
    best = max(np.corrcoef(reference[: len(reference) - lag], decoded[lag:])[0, 1] for lag in range(0, 480))
    assert best > 0.9


def test_opus_payloads_read_out_of_order_still_encode_in_stream_order() -> None:
    audio = tone(0.3)
    in_order = [f.payload for f in one_reply(AudioOut("opus", 16000), [(audio, TTS_RATE_HZ)])]
    frames = one_reply(AudioOut("opus", 16000), [(audio, TTS_RATE_HZ)])
    last_first = [frames[-1].payload] + [f.payload for f in frames[:-1]]
    assert last_first[1:] + last_first[:1] == in_order


def test_opus_frames_are_encoded_only_when_their_payload_is_read() -> None:
    out = AudioOut("opus", 48000)
    frames = out.push(tone(1.0), TTS_RATE_HZ)
    assert all(f._payload is None for f in frames)
    frames[0].payload  # noqa: B018 - reading it is the action under test
    assert frames[0]._payload is not None and frames[1]._payload is None


def test_timeline_records_each_piece_at_its_output_samples() -> None:
    out = AudioOut("pcm16", 24000)
    one_reply(out, [(np.ones(2400, np.float32), 24000), (np.ones(4800, np.float32), 24000)], ["One two.", "Three."])
    assert [(p.text, p.start_samples, p.end_samples) for p in out.timeline.pieces] == [
        ("One two.", 0, 2400), ("Three.", 2400, 7200)]


def test_interrupt_continues_the_stream_at_the_sent_position() -> None:
    out = AudioOut("pcm16", 16000)
    out.push(tone(1.0), TTS_RATE_HZ)
    out.interrupt(sent_samples=960)
    frames = one_reply(out, [(tone(0.1), TTS_RATE_HZ)])
    assert frames[0].timestamp_samples == 960
    assert frames[0].segment == 1


def test_a_reply_interrupted_before_any_frame_was_sent_gives_up_its_segment_index() -> None:
    out = AudioOut("pcm16", 16000)
    one_reply(out, [(tone(0.1), TTS_RATE_HZ)])  # segment 0, 1600 samples, all sent
    out.push(tone(1.0), TTS_RATE_HZ)             # segment 1: frames made, none sent
    out.interrupt(sent_samples=1600)
    assert one_reply(out, [(tone(0.1), TTS_RATE_HZ)])[0].segment == 1


def test_heard_text_after_an_interrupt_comes_from_the_cut_reply() -> None:
    out = AudioOut("pcm16", 24000)
    out.push(np.ones(24000, np.float32), 24000)
    out.end_piece("One two three four.")
    out.push(np.ones(24000, np.float32), 24000)
    out.interrupt(sent_samples=12000)
    assert out.timeline.heard_text(12000) == "One two"


# ------------------------------------------------------------------------------------ TextTimeline

def timeline() -> TextTimeline:
    t = TextTimeline()
    t.add("Hello there.", 1000, 2000)
    t.add("It is sunny in Paris today.", 2000, 4000)
    return t


def test_nothing_is_heard_before_the_reply_plays() -> None:
    assert timeline().heard_text(0) == ""
    assert timeline().heard_text(1000) == ""


def test_a_piece_played_to_its_end_is_heard_whole() -> None:
    assert timeline().heard_text(2000) == "Hello there."


def test_part_of_a_piece_gives_its_leading_words_never_half_a_word() -> None:
    # 50 % of 27 characters = 13.5: "It is sunny" ends at 11, "in" at 14.
    assert timeline().heard_text(3000) == "Hello there. It is sunny"


def test_playback_beyond_the_end_hears_everything() -> None:
    assert timeline().heard_text(10**9) == "Hello there. It is sunny in Paris today."


# ------------------------------------------------------------------------------------------- Pacer

def frames_20ms(count: int, rate_hz: int = 48000) -> list[OutFrame]:
    n = rate_hz // 50
    return [OutFrame(b"", i * n, Flags.NONE, 0, n) for i in range(count)]


class Recorder:
    def __init__(self) -> None:
        self.times: list[float] = []

    async def send(self, frame: OutFrame) -> None:
        self.times.append(time.monotonic())


async def test_pacer_releases_frames_20_ms_apart_after_the_lead() -> None:
    rec = Recorder()
    pacer = Pacer(rec.send, 48000, lead_ms=60)
    start = time.monotonic()
    pacer.enqueue(frames_20ms(20))
    await asyncio.wait_for(pacer.wait_idle(), 2)
    await pacer.aclose()
    gaps_ms = np.diff(rec.times[3:]) * 1000
    assert rec.times[2] - start < 0.015                  # the 60 ms lead goes out at once
    assert 18 < float(np.median(gaps_ms)) < 22
    assert 0.33 < rec.times[-1] - start < 0.5             # 400 ms of audio minus the 60 ms lead


async def test_pacer_never_gets_more_than_lead_ms_ahead() -> None:
    rec = Recorder()
    pacer = Pacer(rec.send, 48000, lead_ms=60)
    start = time.monotonic()
    pacer.enqueue(frames_20ms(15))
    await asyncio.wait_for(pacer.wait_idle(), 2)
    await pacer.aclose()
    leads_ms = [(i + 1) * 20 - (t - start) * 1000 for i, t in enumerate(rec.times)]
    assert max(leads_ms) <= 60 + 2


async def test_pacer_stop_drops_the_queue_and_reports_sent_samples() -> None:
    rec = Recorder()
    pacer = Pacer(rec.send, 48000, lead_ms=60)
    pacer.enqueue(frames_20ms(50))
    await asyncio.sleep(0.1)
    sent = pacer.stop()
    count = len(rec.times)
    await asyncio.sleep(0.08)
    await pacer.aclose()
    assert sent == count * 960 == pacer.sent_samples
    assert 5 <= count <= 10                               # ~ (100 ms + 60 ms lead) / 20 ms
    assert len(rec.times) == count                        # nothing after stop()


async def test_pacer_restarts_its_clock_after_a_gap_instead_of_bursting() -> None:
    rec = Recorder()
    pacer = Pacer(rec.send, 48000, lead_ms=60)
    pacer.enqueue(frames_20ms(3))
    await pacer.wait_idle()
    await asyncio.sleep(0.2)                              # the client plays out, then silence
    restart = time.monotonic()
    pacer.enqueue(frames_20ms(10))
    await asyncio.sleep(0.01)
    burst = sum(t >= restart for t in rec.times)
    await pacer.aclose()
    assert burst == 3                                     # only the lead, not 200 ms of "catch up"
