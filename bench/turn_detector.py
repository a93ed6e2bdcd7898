"""The end-of-turn detector alone, offline: how often it calls a pause the end of a turn, and the
reverse, per signal (audio only / words only / combined), and its latency per call.

The pause set is built, not picked, so nothing here is tuned to it:
- utterances: all real recordings of Debian's pocketsphinx-testdata (LibriVox read speech, "cards",
  spoken commands and digits) and 40 Piper (joe voice) sentences that the tests do not use;
- word boundaries: faster-whisper tiny.en `word_timestamps=True` on the whole utterance;
- "incomplete": the audio up to EVERY mid-utterance word boundary (10 ms fade-out), plus the
  LibriVox clips whose sentence goes on in the book (they end at "," ";" ":");
- "complete": the whole utterances that end a sentence;
- each sample gets 200 ms of silence appended (about when the VAD asks) and its transcript from
  the server's own WhisperEngine (tiny.en, beam 1) on exactly that audio, as a live turn would.

Rates: false "complete" = share of incomplete samples judged complete (the agent would cut the
user off after complete_silence_ms); false "incomplete" = share of complete samples judged
incomplete (the agent waits max_silence_ms). "words only" counts the words' own claims: "complete" on an
incomplete sample, "incomplete" on a complete one; "unknown" (no claim; without the audio model
it waits the fixed 500 ms) is reported as its own share. Latency: SmartTurnEngine.probability
per call, one session at a time (batch 1) and four at once (batch 4); the baseline measured in the
same run is the bare ONNX call on prepared features.

Usage: flock /tmp/heavy.lock .venv/bin/python bench/turn_detector.py [--limit N] [--latency-rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import pickle
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from common import print_table, summary, write_results  # noqa: E402
from piper_speech import synthesize  # noqa: E402
from speech_data import DATA_DIR, cards_clips, librivox_clips, load_wav_16k  # noqa: E402

from voice.asr.endpointing import TurnDetectionSettings, combine  # noqa: E402
from voice.asr.smart_turn import SmartTurnEngine  # noqa: E402
from voice.asr.turn_words import words_verdict  # noqa: E402
from voice.asr.whisper import WhisperEngine  # noqa: E402
from voice.codecs.resample import resample  # noqa: E402
from voice.models import model_path  # noqa: E402

RATE_HZ = 16000
TRAIL = np.zeros(RATE_HZ // 5, np.float32)  # 200 ms of silence after each sample
FADE = np.linspace(1.0, 0.0, RATE_HZ // 100, dtype=np.float32)  # 10 ms fade-out at a cut

#: Requests and questions a voice agent hears; none is in tests/ (written before any run).
PIPER_SENTENCES = (
    "Could I get a table for six people on Sunday evening?",
    "I need to change my flight to Boston next Tuesday.",
    "What time does the pharmacy on Main Street close today?",
    "Please send the invoice to my work email address.",
    "My phone number is five five five, one two three, four five six seven.",
    "I would like to cancel my subscription, effective immediately.",
    "Can you recommend a good Italian restaurant near the station?",
    "The package was supposed to arrive yesterday, but it never came.",
    "How much does it cost to upgrade to the premium plan?",
    "Set an alarm for seven thirty tomorrow morning.",
    "I'm looking for a pair of running shoes in size ten.",
    "Is there a direct train from London to Edinburgh this afternoon?",
    "We are planning a trip to Japan with our two children in April.",
    "Remind me to water the plants when I get home.",
    "Do you deliver to the north side of the city on weekends?",
    "My account number is four four seven two nine one.",
    "I think the problem started after the last software update.",
    "Book me a taxi to the airport for six in the morning.",
    "Which of these two laptops has the longer battery life?",
    "Tell me a short story about a dragon who loves to bake.",
    "Yes, that works for me.",
    "No, I meant the other appointment on Friday.",
    "Could you read me the list of ingredients again?",
    "I'd like to speak with someone about a billing error on my statement.",
    "Can I pay with a credit card when I pick it up?",
    "I want to order two large pizzas with extra cheese.",
    "What is the difference between the basic and the family plan?",
    "My daughter has a dentist appointment at four fifteen on Thursday.",
    "Please turn off the lights in the living room.",
    "Where can I find the nearest charging station for my car?",
    "I already tried restarting the router twice, and it still doesn't work.",
    "Could you spell the name of the street for me?",
    "The meeting with the marketing team has been moved to Monday.",
    "Are there any seats left for the concert on Saturday night?",
    "I lost my wallet somewhere between the bus stop and the office.",
    "How long will it take to get my refund?",
    "Add milk, eggs and bread to my shopping list.",
    "I'm not sure if I want the window seat or the aisle.",
    "Thank you, that's everything I needed.",
    "Would it be possible to get a late checkout tomorrow?",
)
#: How each LibriVox clip ends in the book (Sense and Sensibility, ch. 1): only "." ends a sentence.
LIBRIVOX_ENDS = {"0870": ".", "0880": ",", "0890": ":", "0920": ":", "0930": ";"}
#: The package's other real recordings (16 kHz s16 raw), each one whole utterance: "go forward ten
#: meters", "go somewhere and do something", and two spoken digit strings.
RAW_CLIPS = ("goforward.raw", "something.raw", "numbers.raw", "tidigits/dhd.2934z.raw")
SILENCE_SENSITIVITY_MS = (0, 600)  # Smart Turn is also scored with these trailing silences
SNAP_MS = 50  # a cut moves to the quietest 10 ms frame within this of Whisper's word boundary


@dataclass
class Sample:
    source: str  # "piper" | "librivox" | "cards" | "commands"
    name: str
    complete: bool  # the truth: does the speaker's turn end here?
    speech: np.ndarray  # 16 kHz float32, up to the end of the last word
    text: str = ""  # Whisper's transcript of `audio`
    audio_p: float = float("nan")  # Smart Turn on `audio`
    audio_p_by_silence: dict = field(default_factory=dict)  # trailing silence (ms) -> Smart Turn
    llm_p: float = float("nan")  # the LLM's P(end of turn) after `text` (--llm only)

    @property
    def audio(self) -> np.ndarray:
        """What the detector gets: the speech and 200 ms of silence."""
        return np.concatenate([self.speech, TRAIL])


def utterances(limit: int | None) -> list[tuple[str, str, np.ndarray, bool]]:
    """(source, name, 16 kHz audio, whole utterance ends a sentence)."""
    items = []
    for path, _ in librivox_clips():
        items.append(("librivox", path.stem, load_wav_16k(path), LIBRIVOX_ENDS.get(path.stem[-4:]) == "."))
    items += [("cards", path.stem, load_wav_16k(path), True) for path, _ in cards_clips()]
    for name in RAW_CLIPS:
        path = DATA_DIR / name
        if path.is_file():
            items.append(("commands", path.stem, np.fromfile(path, dtype="<i2").astype(np.float32) / 32768, True))
    for i, text in enumerate(PIPER_SENTENCES[:limit]):
        pcm, rate = synthesize(text)
        items.append(("piper", f"piper-{i:02d}", resample(pcm.astype(np.float32) / 32768, rate, RATE_HZ), True))
    return items


def word_cuts(aligner, audio: np.ndarray) -> list[int]:
    """Sample index after each word but the last (a mid-utterance boundary): Whisper's boundary,
    moved to the quietest 10 ms frame near it (its timestamps are ±0.1 s; a cut inside a word
    would be a clipped word, not a pause)."""
    segments, _ = aligner.transcribe(audio, language="en", beam_size=1, word_timestamps=True,
                                     condition_on_previous_text=False)
    words = [w for s in segments for w in s.words]
    return [_quietest(audio, a.end - SNAP_MS / 1000, max(a.end, b.start) + SNAP_MS / 1000)
            for a, b in itertools.pairwise(words)]


def _quietest(audio: np.ndarray, from_s: float, to_s: float) -> int:
    frame = RATE_HZ // 100
    lo, hi = max(int(from_s * RATE_HZ), 0), min(int(to_s * RATE_HZ), len(audio))
    if hi - lo < frame:
        return lo
    frames = audio[lo : lo + (hi - lo) // frame * frame].reshape(-1, frame)
    return lo + int(np.argmin((frames**2).mean(axis=1))) * frame + frame // 2


def build_samples(limit: int | None) -> list[Sample]:
    from faster_whisper import WhisperModel

    aligner = WhisperModel(str(model_path("whisper-tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    samples = []
    for source, name, audio, ends_sentence in utterances(limit):
        samples.append(Sample(source, name, ends_sentence, audio))
        for k, cut in enumerate(word_cuts(aligner, audio)):
            if cut > len(FADE):
                head = audio[:cut].copy()
                head[-len(FADE):] *= FADE
                samples.append(Sample(source, f"{name}/{k + 1}w", False, head))
    return samples


async def transcribe_all(samples: list[Sample]) -> None:
    asr = WhisperEngine(model_path("whisper-tiny.en"), cpu_threads=2)
    try:
        for i, s in enumerate(samples):
            s.text = (await asr.transcribe(s.audio, final=True)).text
            if i % 50 == 0:
                print(f"  transcribed {i + 1}/{len(samples)}", file=sys.stderr, flush=True)
    finally:
        asr.close()


def judge_all(samples: list[Sample], engine: SmartTurnEngine) -> None:
    """Smart Turn on every sample, and on the same speech with other trailing silences."""
    for i in range(0, len(samples), 8):
        batch = samples[i : i + 8]
        for s, p in zip(batch, engine.model.score([s.audio for s in batch]), strict=True):
            s.audio_p = float(p)
        for silence_ms in SILENCE_SENSITIVITY_MS:
            tail = np.zeros(silence_ms * RATE_HZ // 1000, np.float32)
            probs = engine.model.score([np.concatenate([s.speech, tail]) for s in batch])
            for s, p in zip(batch, probs, strict=True):
                s.audio_p_by_silence[silence_ms] = float(p)


def auc(samples: list[Sample], score) -> float:
    """P(a complete sample scores above an incomplete one): threshold-free, 0.5 = chance."""
    pos = np.array([score(s) for s in samples if s.complete])
    neg = np.array([score(s) for s in samples if not s.complete])
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def llm_scores(samples: list[Sample], model_name: str) -> dict:
    """LiveKit's idea with our LLM: P(<|im_end|>) right after the user's text (lower-cased, no
    punctuation) in the chat template; the template prefix stays in the KV cache between calls."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path(model_name)), n_ctx=512, n_threads=2, n_batch=64, verbose=False)
    end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
    prefix = "<|im_start|>system\nYou are a helpful voice assistant.<|im_end|>\n<|im_start|>user\n"
    times = []
    for s in samples:
        text = " ".join(re.sub(r"[^\w\s'-]", " ", s.text.lower()).split())
        tokens = llm.tokenize((prefix + text).encode(), add_bos=False, special=True)
        t = time.perf_counter()
        cached = llm.input_ids[: llm.n_tokens].tolist()
        same = next((i for i, (x, y) in enumerate(zip(cached, tokens, strict=False)) if x != y),
                    min(len(cached), len(tokens)))
        llm.n_tokens = min(same, len(tokens) - 1)  # keep the shared prefix, evaluate at least one token
        llm.eval(tokens[llm.n_tokens :])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        times.append((time.perf_counter() - t) * 1000)
        probs = np.exp(logits - logits.max())
        s.llm_p = float(probs[end] / probs.sum())
    return {"model": model_name, "call_ms": summary(times)}


def rates(samples: list[Sample], settings: TurnDetectionSettings) -> dict:
    """False complete / false incomplete per signal at these settings."""
    def share(flags: list[bool]) -> float:
        return float(np.mean(flags)) if flags else float("nan")

    out: dict = {}
    threshold = settings.effective_threshold
    for label, truth in (("false_complete_on_incomplete", False), ("false_incomplete_on_complete", True)):
        group = [s for s in samples if s.complete is truth]
        words = [words_verdict(s.text)[0] for s in group]
        wrong = {
            "audio_only": [(s.audio_p >= threshold) != truth for s in group],
            # the words make a claim only when they know: "unknown" is neither (its share is below)
            "words_only": [w == ("incomplete" if truth else "complete") for w in words],
            "combined": [combine(s.audio_p, w, "", settings).complete != truth
                         for s, w in zip(group, words, strict=True)],
        }
        out[label] = {sig: share(flags) for sig, flags in wrong.items()}
        out[label]["words_unknown_share"] = share([w == "unknown" for w in words])
        out[label]["n"] = len(group)
    return out


async def latency(engine: SmartTurnEngine, samples: list[Sample], rounds: int) -> dict:
    """ms per call as a session sees it (batch 1 and 4 at once), and the bare ONNX baseline."""
    audios = [s.audio for s in samples[:rounds * 4]]
    one, four, onnx = [], [], []
    for i in range(rounds):
        t = time.perf_counter()
        await engine.probability(audios[i])
        one.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await asyncio.gather(*(engine.probability(a) for a in audios[4 * i : 4 * i + 4]))
        four.append((time.perf_counter() - t) * 1000)
        features = engine.model.features(audios[i])[None]
        t = time.perf_counter()
        engine.model.probabilities(features)
        onnx.append((time.perf_counter() - t) * 1000)
    words = []
    for s in samples[:200]:
        t = time.perf_counter()
        words_verdict(s.text)
        words.append((time.perf_counter() - t) * 1000)
    return {"batch1_call_ms": summary(one), "batch4_call_ms": summary(four), "onnx_only_batch1_ms": summary(onnx),
            "words_verdict_ms": summary(words), "batch_stats": engine.stats().__dict__}


def print_rates(title: str, r: dict) -> None:
    print(f"\n{title}")
    print(f"{'':34} {'audio only':>11} {'words only':>11} {'combined':>9} {'words unknown':>14} {'n':>5}")
    for label, row in r.items():
        print(f"{label:34} {row['audio_only']:>11.1%} {row['words_only']:>11.1%} {row['combined']:>9.1%} "
              f"{row['words_unknown_share']:>14.1%} {row['n']:>5}")


WORD_SCORE = {"incomplete": 0.0, "unknown": 0.5, "complete": 1.0}


def signal_quality(samples: list[Sample]) -> dict:
    """Threshold-free AUC per signal, and Smart Turn against the silence it is given."""
    auto = TurnDetectionSettings()
    out = {
        "auc_audio": auc(samples, lambda s: s.audio_p),
        "auc_words": auc(samples, lambda s: WORD_SCORE[words_verdict(s.text)[0]]),
        "auc_combined": auc(samples, lambda s: combine(s.audio_p, words_verdict(s.text)[0], "", auto).probability),
    }
    if not np.isnan(samples[0].llm_p):
        out["auc_llm"] = auc(samples, lambda s: s.llm_p)
    incomplete = [s for s in samples if not s.complete]
    complete = [s for s in samples if s.complete]
    out["audio_by_trailing_silence_ms"] = {
        ms: {"auc": auc(samples, lambda s, ms=ms: s.audio_p_by_silence[ms]),
             "false_complete_on_incomplete": float(np.mean([s.audio_p_by_silence[ms] >= 0.5 for s in incomplete])),
             "false_incomplete_on_complete": float(np.mean([s.audio_p_by_silence[ms] < 0.5 for s in complete]))}
        for ms in SILENCE_SENSITIVITY_MS}
    return out


async def prepared_samples(limit: int | None, cache: Path | None) -> list[Sample]:
    """Build and transcribe the set (minutes), or load it from `cache` (written after building)."""
    if cache and cache.is_file():
        return pickle.loads(cache.read_bytes())
    t0 = time.monotonic()
    samples = build_samples(limit)
    print(f"{len(samples)} samples ({sum(s.complete for s in samples)} complete) "
          f"in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    await transcribe_all(samples)
    if cache:
        cache.write_bytes(pickle.dumps(samples))
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="Piper sentences to use (default all)")
    parser.add_argument("--latency-rounds", type=int, default=40)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the transcribed set (reused if present)")
    parser.add_argument("--llm", default=None, help="also score the LLM's P(end of turn), e.g. qwen2.5-coder-0.5b")
    args = parser.parse_args()

    samples = await prepared_samples(args.limit, args.cache)
    engine = SmartTurnEngine(model_path("smart-turn-v3.2"))
    try:
        judge_all(samples, engine)
        lat = await latency(engine, samples, args.latency_rounds)
    finally:
        engine.close()
    if args.llm:
        lat["llm_end_of_turn"] = llm_scores(samples, args.llm)

    by_eagerness = {e: rates(samples, TurnDetectionSettings(eagerness=e)) for e in ("auto", "low", "medium", "high")}
    by_source = {src: rates([s for s in samples if s.source == src], TurnDetectionSettings())
                 for src in ("piper", "librivox", "cards", "commands")}
    quality = signal_quality(samples)
    print_rates("eagerness auto (threshold 0.5): share of samples judged wrong", by_eagerness["auto"])
    for e in ("low", "high"):
        print_rates(f"eagerness {e}", by_eagerness[e])
    for src, r in by_source.items():
        print_rates(f"source {src} (auto)", r)
    print("\nAUC (P(complete sample scores above incomplete); 0.5 = chance): "
          + ", ".join(f"{k[4:]} {v:.3f}" for k, v in quality.items() if k.startswith("auc")))
    for ms, q in quality["audio_by_trailing_silence_ms"].items():
        print(f"Smart Turn with {ms} ms trailing silence: AUC {q['auc']:.3f}, false complete "
              f"{q['false_complete_on_incomplete']:.1%}, false incomplete {q['false_incomplete_on_complete']:.1%}")
    print_table("latency per call", [(k, v) for k, v in lat.items() if k not in ("batch_stats", "llm_end_of_turn")]
                + ([("llm_end_of_turn_ms", lat["llm_end_of_turn"]["call_ms"])] if args.llm else []))
    ratio = lat["batch4_call_ms"]["p50"] / lat["batch1_call_ms"]["p50"]
    overhead = lat["batch1_call_ms"]["p50"] / lat["onnx_only_batch1_ms"]["p50"]
    print(f"\nbatch 4 / batch 1 (p50): {ratio:.2f}x; engine call / bare ONNX (p50): {overhead:.2f}x")

    auto = TurnDetectionSettings()
    write_results("turn_detector", {
        "settings": {"trailing_silence_ms": 200, "asr": "whisper-tiny.en beam 1 (WhisperEngine)",
                     "aligner": "faster-whisper tiny.en word_timestamps", "model": "smart-turn-v3.2"},
        "samples": {"total": len(samples), "complete": sum(s.complete for s in samples),
                    "by_source": {src: sum(s.source == src for s in samples) for src in by_source}},
        "rates_by_eagerness": by_eagerness,
        "rates_by_source_auto": by_source,
        "signal_quality": quality,
        "latency": lat,
        "ratios": {"batch4_over_batch1_p50": ratio, "engine_over_bare_onnx_p50": overhead},
        "errors_auto": [{"name": s.name, "complete": s.complete, "text": s.text, "audio_p": round(s.audio_p, 3),
                         "words": words_verdict(s.text)[1]}
                        for s in samples
                        if combine(s.audio_p, words_verdict(s.text)[0], "", auto).complete != s.complete],
    })


if __name__ == "__main__":
    asyncio.run(main())
