"""ASR latency through the real server: last speech sample sent -> final transcript received.

Streams real read speech (pocketsphinx-testdata) and Piper speech in real time through `voice serve`
with the real protocol client, one session and then several at once. Reports p50/p95 of
  - end of speech -> final transcript (includes the VAD's end-of-turn silence, min_silence_ms),
  - VAD speech_stopped event -> final transcript (the decode and transport part),
  - the cadence of partial transcripts while speaking,
and, as the baseline measured in the same run, the time a direct in-process Whisper decode of the
same utterance takes (no server, no streaming). The ratio says what streaming + transport cost.

Usage: .venv/bin/python bench/asr_latency.py [--rounds 2] [--concurrent 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from common import print_table, summary, write_results  # noqa: E402
from conftest import start_server  # noqa: E402
from piper_speech import SENTENCES, synthesize  # noqa: E402
from speech_data import cards_clips, librivox_clips  # noqa: E402

from voice.client import ClientOptions, VoiceClient  # noqa: E402
from voice.codecs.resample import resample  # noqa: E402

RATE_HZ = 16000
FRAME = RATE_HZ // 50


def last_speech_sample(audio: np.ndarray) -> int:
    """Index just past the last 20 ms frame within 35 dB of the loudest one."""
    frames = audio[: len(audio) // FRAME * FRAME].astype(np.float32).reshape(-1, FRAME)
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-9
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -35)[0]
    return int((loud[-1] + 1) * FRAME)


def utterances() -> list[tuple[str, np.ndarray]]:
    items = [(p.stem, sf.read(str(p), dtype="int16")[0]) for p, _ in librivox_clips() + cards_clips()]
    for i, text in enumerate(SENTENCES):
        audio, rate = synthesize(text)
        pcm = resample(audio.astype(np.float32) / 32768, rate, RATE_HZ)
        items.append((f"piper-{i}", (pcm * 32767).astype(np.int16)))
    return items


async def stream_one(url: str, audio: np.ndarray) -> dict:
    """Real-time stream of one utterance; returns the event timings relative to end of speech."""
    lead, tail = np.zeros(RATE_HZ // 2, np.int16), np.zeros(int(RATE_HZ * 1.5), np.int16)
    signal = np.concatenate([lead, audio, tail])
    end_idx = len(lead) + last_speech_sample(audio)
    client = VoiceClient(url, ClientOptions(input_codec="opus", input_rate_hz=RATE_HZ,
                                            output_codec="pcm16", output_rate_hz=RATE_HZ))
    await client.connect()
    marks: dict = {"partials": []}
    done = asyncio.Event()

    async def receive() -> None:
        async for item in client.messages():
            now = time.perf_counter()
            kind = getattr(item, "type", None)
            if kind == "transcript_partial":
                marks["partials"].append(now)
            elif kind == "speech_stopped":
                marks.setdefault("stopped", now)
            elif kind == "transcript_final" and item.text and "final" not in marks:
                marks["final"], marks["text"] = now, item.text
            elif kind == "input_ended":
                break
        done.set()

    receiver = asyncio.create_task(receive())
    t0 = time.perf_counter()
    for i, pos in enumerate(range(0, len(signal), FRAME)):
        await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.perf_counter()))
        await client.send_audio(signal[pos:pos + FRAME])
        if pos <= end_idx < pos + FRAME:
            marks["end_of_speech"] = time.perf_counter()
    await client.end_input()
    await asyncio.wait_for(receiver, 60)
    await client.close()
    return marks


def offline_decode_ms(items: list[tuple[str, np.ndarray]]) -> list[float]:
    """Baseline: the same utterances decoded directly by the same engine, in process."""
    from voice.asr.whisper import WhisperEngine
    from voice.models import model_path

    async def run() -> list[float]:
        engine = WhisperEngine(model_path("whisper-tiny.en"), cpu_threads=2)
        out = []
        try:
            for _, audio in items:
                t = time.perf_counter()
                await engine.transcribe(audio.astype(np.float32) / 32768, final=True, key="bench")
                out.append((time.perf_counter() - t) * 1000)
        finally:
            engine.close()
        return out

    return asyncio.run(run())


def collect(results: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"speech_end_to_final": [], "stopped_to_final": [], "partial_interval": [],
                                   "speech_end_to_stopped": []}
    for m in results:
        if "final" not in m or "end_of_speech" not in m:
            continue
        out["speech_end_to_final"].append((m["final"] - m["end_of_speech"]) * 1000)
        if "stopped" in m:
            out["stopped_to_final"].append((m["final"] - m["stopped"]) * 1000)
            out["speech_end_to_stopped"].append((m["stopped"] - m["end_of_speech"]) * 1000)
        out["partial_interval"] += list(np.diff(m["partials"]) * 1000)
    return out


async def run_rounds(url: str, items, rounds: int, concurrent: int) -> list[dict]:
    results = []
    for _ in range(rounds):
        for i in range(0, len(items), concurrent):
            batch = items[i:i + concurrent]
            results += await asyncio.gather(*(stream_one(url, audio) for _, audio in batch))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--concurrent", type=int, default=4)
    args = ap.parse_args()
    items = utterances()
    print(f"{len(items)} utterances, {sum(len(a) for _, a in items) / RATE_HZ:.1f} s of speech", flush=True)
    baseline = offline_decode_ms(items)
    server = start_server(Path("/tmp"))
    try:
        single = collect(asyncio.run(run_rounds(server.url, items, args.rounds, 1)))
        multi = collect(asyncio.run(run_rounds(server.url, items, 1, args.concurrent)))
    finally:
        server.stop()
    rows = [("baseline: direct Whisper decode (in process)", summary(baseline))]
    rows += [(f"1 session: {k}", summary(v)) for k, v in single.items()]
    rows += [(f"{args.concurrent} sessions: {k}", summary(v)) for k, v in multi.items()]
    print_table("ASR latency through the server (real-time streaming)", rows)
    ratio = summary(single["stopped_to_final"])["p50"] / summary(baseline)["p50"]
    print(f"\nratio p50(speech_stopped -> final) / p50(direct decode) = {ratio:.2f}")
    write_results("asr_latency", {
        "settings": {"asr_model": "whisper-tiny.en", "min_silence_ms": 500, "rounds": args.rounds,
                     "concurrent": args.concurrent, "utterances": len(items)},
        "baseline_direct_decode_ms": summary(baseline),
        "single_session_ms": {k: summary(v) for k, v in single.items()},
        f"concurrent_{args.concurrent}_ms": {k: summary(v) for k, v in multi.items()},
        "ratio_stopped_to_final_vs_direct_decode_p50": ratio,
    })


if __name__ == "__main__":
    main()
