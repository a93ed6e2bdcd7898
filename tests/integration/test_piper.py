"""PiperEngine with the packaged joe voice on CPU (1 ONNX Runtime thread): latency, intelligibility
(checked by Whisper tiny.en, also after the whole output path), cancellation, sharing between
sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
from speech_data import model_path_or_skip, wer

from voice.codecs.opus import OpusDecoder
from voice.codecs.resample import resample
from voice.config import ConfigError
from voice.pipeline.audio_out import AudioOut
from voice.tts import TextChunker, TtsSettings, build_tts
from voice.tts.base import TtsEngine

pytest.importorskip("piper")
from voice.tts.piper import PiperEngine  # after the skip: piper-tts may be absent

FIVE_SENTENCES = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls."
)


@pytest.fixture(scope="module")
def engine() -> Iterator[PiperEngine]:
    tts = PiperEngine(model_path_or_skip("piper-joe"), intra_op_threads=1)
    yield tts
    tts.close()


async def collect(engine: PiperEngine, text: str) -> list[np.ndarray]:
    return [chunk async for chunk in engine.synthesize(text)]


async def wait_until_idle(engine: PiperEngine, timeout_s: float = 5.0) -> int:
    """Items the worker has processed, once that number stops changing."""
    deadline = time.monotonic() + timeout_s
    items = -1
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        if engine.stats().items == items:
            return items
        items = engine.stats().items
    raise AssertionError("engine did not become idle")


def test_engine_implements_the_tts_interface(engine: PiperEngine) -> None:
    assert isinstance(engine, TtsEngine)
    assert engine.sample_rate_hz == 22050


async def test_yields_one_float32_chunk_per_sentence(engine: PiperEngine) -> None:
    chunks = await collect(engine, "Hello there. How are you today?")
    assert len(chunks) == 2
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert all(0.5 < float(np.max(np.abs(c))) <= 1.0 for c in chunks)


async def test_first_chunk_arrives_quickly(engine: PiperEngine) -> None:
    await collect(engine, "Warm up.")
    started = time.perf_counter()
    stream = engine.synthesize(FIVE_SENTENCES)
    first = await anext(stream)
    latency_s = time.perf_counter() - started
    await stream.aclose()
    assert len(first) > engine.sample_rate_hz  # a whole first sentence (> 1 s of audio)
    assert latency_s < 1.0                     # ~0.2 s on an idle core; loose for a shared CI box


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_path_or_skip("whisper-tiny.en")), device="cpu", compute_type="int8",
                        cpu_threads=1)


def transcribe(whisper, audio: np.ndarray, rate_hz: int) -> str:
    audio_16k = resample(audio.astype(np.float32), rate_hz, 16000).astype(np.float32)
    segments, _ = whisper.transcribe(audio_16k, beam_size=1, language="en", condition_on_previous_text=False)
    return " ".join(s.text for s in segments)


async def test_speech_is_intelligible_to_whisper(engine: PiperEngine, whisper) -> None:
    text = "Please remind me to call my sister at six o'clock tomorrow."
    heard = transcribe(whisper, np.concatenate(await collect(engine, text)), engine.sample_rate_hz)
    assert wer(text, heard) <= 0.2, heard


async def test_speech_stays_intelligible_through_chunker_fades_and_opus(engine: PiperEngine, whisper) -> None:
    reply = "Sure, I can book that for you. The table for four is at seven tonight. Enjoy your meal!"
    chunker, out = TextChunker(), AudioOut("opus", 48000)
    frames = []
    for piece in chunker.feed(reply) + chunker.flush():
        async for chunk in engine.synthesize(piece):
            frames += out.push(chunk, engine.sample_rate_hz)
        frames += out.end_piece(piece)
    frames += out.end_reply()
    decoder = OpusDecoder(48000)
    audio = np.concatenate([decoder.decode(f.payload) for f in frames]) / 32768
    heard = transcribe(whisper, audio, 48000)
    assert wer(reply, heard) <= 0.2, heard


async def test_cancelling_after_the_first_chunk_drops_the_remaining_sentences(engine: PiperEngine) -> None:
    before = await wait_until_idle(engine)
    stream = engine.synthesize(FIVE_SENTENCES)
    await anext(stream)
    await stream.aclose()
    processed = await wait_until_idle(engine) - before
    # phonemize + sentence 1 + at most the prefetched sentence 2; never sentences 3-5.
    assert processed <= 3


async def test_after_a_cancel_the_engine_serves_the_next_request_promptly(engine: PiperEngine) -> None:
    stream = engine.synthesize(FIVE_SENTENCES)
    await anext(stream)
    await stream.aclose()
    started = time.perf_counter()
    chunks = await collect(engine, "Next request.")
    assert len(chunks) == 1
    assert time.perf_counter() - started < 1.5  # at most one running sentence to wait for


async def test_breaking_out_of_the_loop_cancels_too(engine: PiperEngine) -> None:
    before = await wait_until_idle(engine)
    async for _ in engine.synthesize(FIVE_SENTENCES):
        break
    processed = await wait_until_idle(engine) - before
    assert processed <= 3


async def test_a_second_session_gets_its_first_audio_before_a_long_reply_ends(engine: PiperEngine) -> None:
    done_at: dict[str, float] = {}

    async def long_reply() -> None:
        async for _ in engine.synthesize(FIVE_SENTENCES):
            pass
        done_at["long"] = time.perf_counter()

    async def short_reply() -> None:
        await asyncio.sleep(0.05)  # arrives while the long reply is being synthesized
        stream = engine.synthesize("Hi.")
        await anext(stream)
        done_at["short_first"] = time.perf_counter()
        await stream.aclose()

    await asyncio.gather(long_reply(), short_reply())
    assert done_at["short_first"] < done_at["long"]


async def test_an_unknown_speaker_is_refused(engine: PiperEngine) -> None:
    with pytest.raises(ValueError, match="single speaker"):
        await collect_with_voice(engine, "Hello.", "alice")


async def collect_with_voice(engine: PiperEngine, text: str, voice: str) -> list[np.ndarray]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice)]


def test_build_tts_refuses_an_engine_that_is_not_registered(monkeypatch) -> None:
    import voice.tts

    monkeypatch.delitem(voice.tts.ENGINE_BUILDERS, "orpheus")  # as in a build without token TTS
    with pytest.raises(ConfigError, match="orpheus"):
        build_tts(TtsSettings(engine="orpheus"))


def test_build_tts_builds_piper_from_the_default_settings() -> None:
    model_path_or_skip("piper-joe")
    tts = build_tts(TtsSettings())
    try:
        assert isinstance(tts, PiperEngine)
    finally:
        tts.close()
