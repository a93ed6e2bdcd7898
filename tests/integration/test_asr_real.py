"""WhisperEngine + Listener on real speech (LibriVox and cards clips), with the real models."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from speech_data import all_clips_or_skip, corpus_wer, load_wav_16k, model_path_or_skip, wer

from voice.asr.listener import (
    EarlyDropped,
    EarlyTranscript,
    FinalTranscript,
    Listener,
    PartialTranscript,
    SpeechStarted,
    SpeechStopped,
)
from voice.asr.vad import VadEngine, VadSettings
from voice.asr.whisper import WhisperEngine

pytestmark = pytest.mark.timeout(300)

SR = 16000
CHUNK = 320  # 20 ms
MAX_WER = 0.15


@pytest.fixture(scope="module")
def vad_engine():
    engine = VadEngine(model_path_or_skip("silero-vad-pkg"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def asr_engine():
    engine = WhisperEngine(model_path_or_skip("whisper-tiny.en"), cpu_threads=2)
    yield engine
    engine.close()


def with_silence(audio: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    silence = np.zeros(int(SR * seconds), dtype=np.float32)
    return np.concatenate([silence, audio, silence])


async def listen(listener: Listener, audio: np.ndarray, *, speed: float | None = None) -> list:
    """Feed 20 ms chunks (as fast as possible, or `speed` × real time), flush, return all events."""
    for i in range(0, len(audio), CHUNK):
        await listener.feed(audio[i : i + CHUNK])
        if speed is not None:
            await asyncio.sleep(CHUNK / SR / speed)
    await listener.flush()
    events = []
    while not listener.events.empty():
        events.append(listener.events.get_nowait())
    return events


def final_text(events: list) -> str:
    return " ".join(e.text for e in events if isinstance(e, FinalTranscript) and e.text)


async def test_finals_word_error_rate_is_at_most_15_percent(vad_engine, asr_engine):
    pairs = []
    for path, reference in all_clips_or_skip():
        events = await listen(Listener(vad_engine, asr_engine), with_silence(load_wav_16k(path)))
        pairs.append((reference, final_text(events)))
    assert corpus_wer(pairs) <= MAX_WER, pairs


async def test_partials_arrive_before_the_final_for_clips_of_3_s_or_more(vad_engine, asr_engine):
    # Paced at 3x real time: unpaced, a whole 3 s clip is fed faster than one Whisper decode (~0.35 s),
    # so the utterance is closed before any partial can finish (partials never follow SpeechStopped).
    long_clips = [(p, a) for p, _ in all_clips_or_skip() if len(a := load_wav_16k(p)) >= 3 * SR]
    assert long_clips
    for path, audio in long_clips:
        events = await listen(Listener(vad_engine, asr_engine), with_silence(audio, 0.5), speed=3.0)
        kinds = [type(e) for e in events]
        assert PartialTranscript in kinds, path.name
        assert kinds.index(PartialTranscript) < kinds.index(FinalTranscript), path.name


async def test_events_of_each_utterance_come_in_order(vad_engine, asr_engine):
    rank = {SpeechStarted: 0, PartialTranscript: 1, EarlyTranscript: 1, EarlyDropped: 1, SpeechStopped: 2,
            FinalTranscript: 3}
    clips = all_clips_or_skip()
    audio = np.concatenate([with_silence(load_wav_16k(p)) for p, _ in clips[:3]])
    events = await listen(Listener(vad_engine, asr_engine), audio, speed=4.0)
    by_utterance: dict[int, list[int]] = {}
    for event in events:
        by_utterance.setdefault(event.utterance, []).append(rank[type(event)])
    assert len(by_utterance) >= 3
    for ranks in by_utterance.values():
        assert ranks == sorted(ranks)
        assert ranks[0] == 0 and ranks.count(2) == 1 and ranks[-1] == 3 and ranks.count(3) == 1


async def test_the_early_transcript_comes_before_speech_stopped_and_is_the_final(vad_engine, asr_engine):
    path, _ = all_clips_or_skip()[1]
    listener = Listener(vad_engine, asr_engine, VadSettings(min_silence_ms=1500))  # time for the decode
    events = await listen(listener, with_silence(load_wav_16k(path), 2.0), speed=2.0)
    kinds = [type(e) for e in events]
    assert EarlyTranscript in kinds, kinds
    early = next(e for e in events if isinstance(e, EarlyTranscript))
    final = next(e for e in events if isinstance(e, FinalTranscript))
    assert kinds.index(EarlyTranscript) < kinds.index(SpeechStopped)
    assert (early.text, early.end_ms) == (final.text, final.end_ms) and final.text


async def test_speech_after_a_pause_voids_the_early_transcript_and_the_final_has_both_parts(vad_engine, asr_engine):
    (first, ref1), (second, ref2) = all_clips_or_skip()[1:3]
    pause = np.zeros(int(SR * 0.6), dtype=np.float32)  # shorter than the end-of-turn silence
    audio = with_silence(np.concatenate([load_wav_16k(first), pause, load_wav_16k(second)]), 2.0)
    events = await listen(Listener(vad_engine, asr_engine, VadSettings(min_silence_ms=1500)), audio, speed=2.0)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1, finals
    assert any(isinstance(e, EarlyDropped) and e.utterance == 0 for e in events)
    assert wer(f"{ref1} {ref2}", finals[0].text) <= 0.3, finals[0].text


async def test_final_positions_are_in_the_input_stream(vad_engine, asr_engine):
    path, _ = all_clips_or_skip()[1]
    events = await listen(Listener(vad_engine, asr_engine), with_silence(load_wav_16k(path), 2.0))
    final = next(e for e in events if isinstance(e, FinalTranscript))
    started = next(e for e in events if isinstance(e, SpeechStarted))
    assert final.start_ms == started.at_ms
    assert 1500 <= final.start_ms <= 2500 and final.end_ms > final.start_ms + 2000


async def test_silence_produces_no_transcript(vad_engine, asr_engine):
    events = await listen(Listener(vad_engine, asr_engine), np.zeros(3 * SR, dtype=np.float32))
    assert final_text(events) == ""


async def test_white_noise_produces_no_transcript(vad_engine, asr_engine):
    noise = np.random.default_rng(2).normal(0, 0.1, 3 * SR).astype(np.float32)
    events = await listen(Listener(vad_engine, asr_engine), noise)
    assert final_text(events) == ""
    assert not any(isinstance(e, PartialTranscript) and e.text for e in events)


async def test_guard_drops_what_whisper_says_to_white_noise(asr_engine):
    # The VAD already rejects noise; this checks the guard against the model's own output.
    from voice.asr.streaming import StreamingTranscriber

    transcriber = StreamingTranscriber(asr_engine, key="noise")
    transcriber.append(np.random.default_rng(3).normal(0, 0.05, 3 * SR).astype(np.float32))
    assert (await transcriber.finalize()).text == ""


async def test_feed_never_waits_for_a_whisper_decode(vad_engine, asr_engine):
    audio = with_silence(load_wav_16k(all_clips_or_skip()[0][0]))
    listener = Listener(vad_engine, asr_engine)
    slowest = 0.0
    for i in range(0, len(audio), CHUNK):
        started = time.perf_counter()
        await listener.feed(audio[i : i + CHUNK])
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(CHUNK / SR / 4)
    await listener.aclose()
    assert slowest < 0.15  # one Whisper decode takes ~0.35 s on this machine


async def test_concurrent_finals_are_batched_and_match_single_decodes():
    # batching is the CUDA default; on CPU it is opt-in (no gain there), so ask for it here
    engine = WhisperEngine(model_path_or_skip("whisper-tiny.en"), cpu_threads=2, max_batch=4)
    try:
        audios = [load_wav_16k(p) for p, _ in all_clips_or_skip()[:4]]
        single = [await engine.transcribe(a, final=True) for a in audios]
        before = engine.stats()
        batched = await asyncio.gather(*(engine.transcribe(a, final=True) for a in audios))
        after = engine.stats()
    finally:
        engine.close()
    assert after.batches - before.batches < len(audios)
    assert corpus_wer([(s.text, b.text) for s, b in zip(single, batched, strict=True)]) <= 0.05


async def test_cpu_engine_decodes_one_at_a_time_so_finals_are_not_held_up(asr_engine):
    audios = [load_wav_16k(p) for p, _ in all_clips_or_skip()[:3]]
    before = asr_engine.stats()
    await asyncio.gather(*(asr_engine.transcribe(a, final=True) for a in audios))
    assert asr_engine.stats().batches - before.batches == len(audios)


async def test_audio_longer_than_30_s_is_decoded_in_pieces(asr_engine):
    clips = all_clips_or_skip()
    audio = np.concatenate([load_wav_16k(p) for p, _ in clips[:5]] * 2)  # ~49 s
    assert len(audio) > 30 * SR
    result = await asr_engine.transcribe(audio, final=True)
    reference = " ".join(ref for _, ref in clips[:5]) * 1
    assert result.duration_s == pytest.approx(len(audio) / SR)
    assert corpus_wer([(reference + " " + reference, result.text)]) <= 0.3


async def test_one_long_chunk_transcribes_like_20_ms_chunks(vad_engine, asr_engine):
    path, _ = all_clips_or_skip()[1]
    audio = with_silence(load_wav_16k(path), 2.0)
    chunked = await listen(Listener(vad_engine, asr_engine), audio)
    listener = Listener(vad_engine, asr_engine)
    await listener.feed(audio)
    await listener.flush()
    whole = [listener.events.get_nowait() for _ in range(listener.events.qsize())]
    finals = [[e for e in events if isinstance(e, FinalTranscript)] for events in (chunked, whole)]
    assert finals[0] == finals[1]


class BehindEngine:
    """The real engine, reporting a backlog: the listener must not queue partials on top."""

    def __init__(self, engine: WhisperEngine):
        self.engine, self.partials = engine, 0
        self.language = engine.language

    def backlog(self) -> int:
        return 3

    async def transcribe(self, audio, *, final, key=None):
        self.partials += not final
        return await self.engine.transcribe(audio, final=final, key=key)


async def test_partials_are_shed_while_the_engine_is_behind(vad_engine, asr_engine):
    clip, ref = all_clips_or_skip()[0]
    engine = BehindEngine(asr_engine)
    listener = Listener(vad_engine, engine)
    audio = with_silence(load_wav_16k(clip))
    for i in range(0, len(audio), CHUNK):
        await listener.feed(audio[i : i + CHUNK])
    await listener.flush()
    events = [listener.events.get_nowait() for _ in range(listener.events.qsize())]
    await listener.aclose()
    assert engine.partials == 0
    finals = [e.text for e in events if isinstance(e, FinalTranscript)]
    assert wer(ref, " ".join(finals)) <= 0.15  # finals still come
