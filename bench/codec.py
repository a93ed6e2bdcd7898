"""Codec decoding for token TTS: speed per stream, first audio, throughput with and without batching.

Measures, with the real SNAC 24 kHz architecture (random weights: same cost as the real ones):
  1. decode speed per stream: one Orpheus window (4 frames, keeps 85.3 ms) and 1 s in one call,
     as real-time factors (decode time / audio time; < 1 keeps up);
  2. first audio: Orpheus GGUF (tiny random on CPU; Orpheus-3B shape on CUDA) -> tokens -> SNAC,
     time from the first audio token to the first audio chunk, and the LM's tokens/s;
  3. aggregate throughput at 1, 4, 16, 64 concurrent streams, each fed frames at an LLM's pace
     (--tokens-per-s, default 85: Orpheus's real-time rate is 82), in two modes in the same run:
       per-stream: every 4-frame window decoded by its own call (the reference Orpheus loop);
       batched:    the CodecEngine (adaptive batches of 8-64 frames across streams, first audio
                   first, consecutive windows of a busy stream coalesced into one wider window).
     Latency per frame = from the moment its audio could be decoded (its right context arrived) to
     the moment its audio is delivered. Throughput = audio seconds delivered / wall seconds.

Usage: .venv/bin/python bench/codec.py [--device cpu|cuda] [--streams 1,4,16,64] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import print_table, summary, write_results  # noqa: E402

from voice.codecs.codec_base import choose_device  # noqa: E402
from voice.codecs.snac import SnacDecoder  # noqa: E402
from voice.tts.codec_engine import CodecEngine, CodecStream, stream_audio  # noqa: E402
from voice.tts.orpheus import (  # noqa: E402
    END_OF_SPEECH,
    ORPHEUS_WINDOW,
    OrpheusEngine,
    OrpheusFrameParser,
    SamplingSettings,
    allowed_audio_ids,
)

SPF = 2048
FRAME_MS = 1000.0 * SPF / 24000


def decode_speed(snac: SnacDecoder, repeats: int) -> dict:
    rng = np.random.default_rng(0)

    def timed(frames: int, batch: int = 1) -> float:
        codes = rng.integers(0, 4096, (batch, frames, 7))
        snac.decode(codes)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            snac.decode(codes)
            times.append((time.perf_counter() - started) * 1000)
        return float(np.median(times))

    window_ms, second_ms, wide_ms = timed(4), timed(12), timed(11)
    batch16_ms = timed(4, 16)
    return {"window_4_frames_ms": window_ms, "window_rtf": window_ms / FRAME_MS,
            "one_second_ms": second_ms, "one_second_rtf": second_ms / 1024.0,
            "coalesced_11_frames_keep_8_ms": wide_ms, "coalesced_rtf": wide_ms / (8 * FRAME_MS),
            "stacked_16_windows_ms": batch16_ms, "stacked_ms_per_window": batch16_ms / 16}


async def timed_tokens(agen, first_token: list[float]):
    """Pass tokens through, noting when the first one arrived."""
    async for token in agen:
        if not first_token:
            first_token.append(time.perf_counter())
        yield token


async def first_audio(engine: OrpheusEngine, rounds: int) -> dict:
    """First audio token -> first chunk, through the engine's own LM, parser and codec engine."""
    latencies, rates = [], []
    for i in range(rounds):
        parser, first_token = OrpheusFrameParser(), []
        gen = engine.lm.generate(engine.prompt(f"Benchmark sentence number {i}."), sampling=engine.sampling,
                                 allowed=allowed_audio_ids, stop_ids=frozenset({END_OF_SPEECH}), max_tokens=7 * 12)
        chunks = stream_audio(timed_tokens(gen, first_token), parser.push, CodecStream(engine.codec, ORPHEUS_WINDOW))
        async for _ in chunks:
            latencies.append((time.perf_counter() - first_token[0]) * 1000)
            break
        await chunks.aclose()
        while engine.lm.busy:
            await asyncio.sleep(0.005)
        rates.append(engine.lm.tokens_per_s)
    return {"first_token_to_first_audio_ms": summary(latencies), "lm_tokens_per_s": float(np.median(rates))}


async def one_stream(engine: CodecEngine, frames: np.ndarray, interval_s: float, coalesce: bool,
                     offset_s: float, lat_ms: list[float], first_ms: list[float]) -> float:
    stream = CodecStream(engine, ORPHEUS_WINDOW, coalesce=coalesce)
    pushed: list[float] = []
    done: list[float] = []

    async def feed() -> None:
        start = time.perf_counter() + offset_s
        for i, frame in enumerate(frames):
            await asyncio.sleep(max(start + i * interval_s - time.perf_counter(), 0))
            stream.push(frame)
            pushed.append(time.perf_counter())
        stream.finish()
        done.append(time.perf_counter())

    feeder = asyncio.create_task(feed())
    delivered, right, window = 0, ORPHEUS_WINDOW.right_frames, ORPHEUS_WINDOW.window_frames
    async for chunk in stream.chunks():
        now = time.perf_counter()
        if delivered == 0:
            first_ms.append((now - pushed[0]) * 1000)
        for j in range(delivered, delivered + len(chunk) // SPF):
            ready_idx = max(j + right, window - 1)
            ready = pushed[ready_idx] if ready_idx < len(frames) else done[0]
            lat_ms.append((now - ready) * 1000)
        delivered += len(chunk) // SPF
    await feeder
    return delivered * SPF / 24000


async def throughput(snac: SnacDecoder, n_streams: int, n_frames: int, tokens_per_s: float, batched: bool,
                     target_ms: float | None) -> dict:
    if batched:
        engine = CodecEngine(snac, min_batch_frames=8, max_batch_frames=64, target_latency_ms=target_ms,
                             warmup_frames=0)
    else:  # one 4-frame window per call: what each stream decoding for itself does
        engine = CodecEngine(snac, min_batch_frames=4, max_batch_frames=4, window_ms=0.0, target_latency_ms=None,
                             warmup_frames=0)
    rng = np.random.default_rng(n_streams)
    interval = 7.0 / tokens_per_s
    lat: list[float] = []
    first: list[float] = []
    started = time.perf_counter()
    codes = [rng.integers(0, 4096, (n_frames, 7)) for _ in range(n_streams)]
    audio_s = await asyncio.gather(*(one_stream(engine, c, interval, batched, rng.uniform(0, interval), lat, first)
                                     for c in codes))
    wall = time.perf_counter() - started
    stats = engine.stats()
    engine.close()
    return {"streams": n_streams, "frames_per_stream": n_frames, "audio_s": float(sum(audio_s)), "wall_s": wall,
            "throughput_x_realtime": float(sum(audio_s)) / wall, "frame_latency_ms": summary(lat),
            "first_audio_ms": summary(first), "decode_calls": stats.batches, "requests": stats.items,
            "mean_batch_frames": stats.units / max(stats.batches, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--streams", default="1,4,16,64")
    ap.add_argument("--frames", type=int, default=24, help="frames per stream (64 streams: half)")
    ap.add_argument("--tokens-per-s", type=float, default=85.0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--target-ms", type=float, default=150.0, help="codec batch latency target, ms")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where random GGUFs are written")
    ap.add_argument("--quick", action="store_true", help="fewer frames and repeats (smoke run)")
    args = ap.parse_args()

    import torch

    device = choose_device(args.device, torch.cuda.is_available())
    real_size = device == "cuda"  # GPU: Orpheus-3B shape, fully offloaded; CPU: the tiny GGUF
    snac = SnacDecoder(random_weights=True, device=device, n_threads=args.threads)
    repeats = 3 if args.quick else 10
    speed = decode_speed(snac, repeats)
    print_table("SNAC decode per stream", [
        ("4-frame window (keeps 85 ms)", summary([speed["window_4_frames_ms"]])),
        ("1 s of audio in one call", summary([speed["one_second_ms"]])),
        ("11-frame coalesced window (keeps 683 ms)", summary([speed["coalesced_11_frames_keep_8_ms"]])),
        ("16 windows stacked, per window", summary([speed["stacked_ms_per_window"]]))])
    print(f"RTF: window {speed['window_rtf']:.2f}, 1 s one-shot {speed['one_second_rtf']:.2f}, "
          f"coalesced {speed['coalesced_rtf']:.2f}")

    from voice.tts.gguf_tiny import cached_gguf
    from voice.tts.token_settings import TokenTtsSettings, cache_folder

    cache = args.cache_dir or cache_folder(TokenTtsSettings())
    gguf = cached_gguf("orpheus", cache, real_size=real_size)
    codec = CodecEngine(snac)
    orpheus = OrpheusEngine(gguf, codec, n_threads=args.threads, n_gpu_layers=-1 if real_size else 0,
                            sampling=SamplingSettings(seed=0))
    fa = asyncio.run(first_audio(orpheus, 3 if args.quick else 8))
    orpheus.close()
    codec.close()
    print_table(f"First audio ({gguf.name}, {fa['lm_tokens_per_s']:.0f} tokens/s)",
                [("first audio token -> first audio chunk", fa["first_token_to_first_audio_ms"])])

    frames = 8 if args.quick else args.frames
    runs: list[dict] = []
    for n in (int(s) for s in args.streams.split(",")):
        n_frames = frames if n < 64 else max(frames // 2, 6)
        for batched in (False, True):
            r = asyncio.run(throughput(snac, n, n_frames, args.tokens_per_s, batched, args.target_ms))
            r["mode"] = "batched" if batched else "per-stream"
            runs.append(r)
            print(f"{n:>3} streams {r['mode']:>10}: {r['throughput_x_realtime']:6.2f}x real time, "
                  f"frame latency p50 {r['frame_latency_ms']['p50']:7.0f} p95 {r['frame_latency_ms']['p95']:7.0f} ms, "
                  f"first audio p95 {r['first_audio_ms']['p95']:6.0f} ms, {r['decode_calls']} calls, "
                  f"{r['mean_batch_frames']:.1f} frames/call", flush=True)
    ratios = {}
    for n in sorted({r["streams"] for r in runs}):
        per, bat = (next(r for r in runs if r["streams"] == n and r["mode"] == m) for m in ("per-stream", "batched"))
        ratios[str(n)] = {"throughput_ratio": bat["throughput_x_realtime"] / per["throughput_x_realtime"],
                          "p95_latency_ms_per_stream": per["frame_latency_ms"]["p95"],
                          "p95_latency_ms_batched": bat["frame_latency_ms"]["p95"]}
    print_table("Frame latency (ms), per-stream vs batched", [
        (f"{r['streams']:>2} streams {r['mode']}", r["frame_latency_ms"]) for r in runs])
    print("\nbatched / per-stream aggregate throughput: " + ", ".join(
        f"{n} streams {v['throughput_ratio']:.2f}x (p95 {v['p95_latency_ms_per_stream']:.0f} -> "
        f"{v['p95_latency_ms_batched']:.0f} ms)" for n, v in ratios.items()))
    write_results("codec", {"device": device, "dtype": snac.dtype, "threads": args.threads,
                            "tokens_per_s_per_stream": args.tokens_per_s, "load_avg": os.getloadavg(),
                            "decode_speed": speed, "first_audio": {**fa, "gguf": gguf.name},
                            "throughput": runs, "batched_vs_per_stream": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
