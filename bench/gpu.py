"""GPU one-shot benchmark: how much one GPU serves, timed with real-size random-weight models.

Made for one bare H100/H200 (bench/gpu.sh) in under 8 minutes. It imports only torch,
transformers, numpy, the `snac` package (its wheel is in bench/wheels/) and voice/codecs/snac.py,
never the server stack, whose dependencies (pydantic, websockets, soxr, faster-whisper...) the GPU
image does not have. Random weights cost exactly what trained ones cost. Three tables:

1. SNAC 24 kHz decode (Orpheus's codec, voice/codecs/snac.py), fp16: one Orpheus window per stream
   (4 frames decoded, 1 kept = 85.3 ms of audio), 1..64 streams stacked in one call: ms per call,
   ms per window, real-time factor (call ms / 85.3 ms) and how many streams that call rate serves.
2. LM decode of an Orpheus-3B-shaped Llama (Llama-3.2-3B layers, Orpheus's 156,940-token vocab),
   bf16: prefill 64 tokens, then 64 greedy tokens per stream, batch 1..64, two ways (bench/gpu_lm.py):
   `eager` (transformers out of the box, a DynamicCache: Python launches every kernel of every
   token, so small batches are launch-bound) and `cuda_graph` (one decode step over a StaticCache
   captured as a CUDA graph and replayed: what vLLM/SGLang do). Orpheus needs 82 tokens/s per
   stream (7 tokens per 85.3 ms SNAC frame) to speak in real time.
3. Whisper-large-v3-turbo-shaped encoder + 30-token greedy decode, fp16, 1/4/16 utterances of 5 s.
   Whisper pads every input to 30 s of features, so a 5 s utterance costs the encoder what 30 s does.

`--smoke` runs the same code with tiny shapes on the CPU in seconds (CI: tests/unit/test_gpu_bench_smoke.py).
The JSON is rewritten after every table, so a crash or the time budget keeps what came before.

Usage: bench/gpu.sh  (or: python3 bench/gpu.py [--smoke] [--out FILE] [--budget-s 420])
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import machine  # noqa: E402  (numpy + stdlib only)
from gpu_lm import ORPHEUS_TOKENS_PER_S, cache_kwarg, lm_table  # noqa: E402

#: Orpheus's streaming window (voice/tts/orpheus.py ORPHEUS_WINDOW: left 1, hop 1, right 2), copied
#: because importing voice.tts pulls in pydantic; tests/unit/test_gpu_bench_smoke.py checks they agree.
ORPHEUS_WINDOW_FRAMES, ORPHEUS_KEPT_FRAMES = 4, 1

#: Orpheus 3B (canopylabs/orpheus-3b-0.1-ft config.json): Llama-3.2-3B plus 28,684 audio/special tokens.
ORPHEUS_3B = {"hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8,
              "head_dim": 128, "intermediate_size": 8192, "vocab_size": 156940, "rms_norm_eps": 1e-5,
              "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": True}
#: openai/whisper-large-v3-turbo config.json.
WHISPER_TURBO = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 4, "encoder_attention_heads": 20,
                 "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120,
                 "num_mel_bins": 128, "vocab_size": 51866, "max_source_positions": 1500,
                 "max_target_positions": 448}


@dataclass(frozen=True)
class Plan:
    """Every size the run uses; FULL on the GPU, SMOKE (same code, tiny shapes) on a CPU."""

    device: str
    codec_dtype: str
    lm_dtype: str
    snac_overrides: dict = field(default_factory=dict)
    snac_streams: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    lm_config: dict = field(default_factory=lambda: dict(ORPHEUS_3B))
    lm_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    prefill_tokens: int = 64
    new_tokens: int = 64
    whisper_config: dict = field(default_factory=lambda: dict(WHISPER_TURBO))
    whisper_batches: tuple[int, ...] = (1, 4, 16)
    whisper_prompt_tokens: int = 4  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
    whisper_tokens: int = 30
    utterance_s: float = 5.0
    repeats: int = 10


FULL = Plan(device="cuda", codec_dtype="float16", lm_dtype="bfloat16")
SMOKE = Plan(
    device="cpu", codec_dtype="float32", lm_dtype="float32", snac_overrides={"decoder_dim": 64},
    snac_streams=(1, 2),
    lm_config={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "head_dim": 16, "intermediate_size": 128, "vocab_size": 512, "max_position_embeddings": 256,
               "tie_word_embeddings": True},
    lm_batches=(1, 2), prefill_tokens=8, new_tokens=6,
    whisper_config={"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                    "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
                    "num_mel_bins": 16, "vocab_size": 512, "max_source_positions": 50, "max_target_positions": 64,
                    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1, "decoder_start_token_id": 2},
    whisper_batches=(1, 2), whisper_tokens=4, repeats=2)


class Clock:
    """The run's time budget: a table row that would start after it is skipped, and says so."""

    def __init__(self, budget_s: float):
        self.started = time.perf_counter()
        self.budget_s = budget_s

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> bool:
        return self.elapsed_s() < self.budget_s


def sync_of(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def timed_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None], warmup: int = 2) -> list[float]:
    """Wall ms of `fn` per call, the GPU drained before and after each (launches are asynchronous)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - started) * 1000)
    return times


def stats(times: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def progress(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------- 1. SNAC


def snac_table(plan: Plan, clock: Clock) -> dict:
    from voice.codecs.snac import CODES_PER_FRAME, SnacDecoder

    decoder = SnacDecoder(random_weights=True, device=plan.device, dtype=plan.codec_dtype,  # type: ignore[arg-type]
                          n_threads=None, config=plan.snac_overrides)
    window_audio_ms = 1000 * ORPHEUS_KEPT_FRAMES * decoder.samples_per_frame / decoder.sample_rate_hz
    rng, sync, rows = np.random.default_rng(0), sync_of(plan.device), []
    progress(f"\nSNAC decode, {plan.codec_dtype}: {ORPHEUS_WINDOW_FRAMES}-frame windows keeping "
             f"{window_audio_ms:.1f} ms each\n{'streams':>8} {'ms/call':>9} {'p95':>8} {'ms/window':>10} "
             f"{'RTF':>7} {'streams served':>15}")
    for streams in plan.snac_streams:
        if not clock.left():
            rows.append({"streams": streams, "skipped": "time budget"})
            continue
        codes = rng.integers(0, decoder.codebook_size, (streams, ORPHEUS_WINDOW_FRAMES, CODES_PER_FRAME))
        s = stats(timed_ms(lambda c=codes: decoder.decode(c), plan.repeats, sync))
        row = {"streams": streams, **s, "ms_per_window": s["p50_ms"] / streams,
               "rtf": s["p50_ms"] / window_audio_ms, "streams_served": streams * window_audio_ms / s["p50_ms"]}
        rows.append(row)
        progress(f"{streams:>8} {s['p50_ms']:>9.2f} {s['p95_ms']:>8.2f} {row['ms_per_window']:>10.3f} "
                 f"{row['rtf']:>7.3f} {row['streams_served']:>15.1f}")
    timed = [r for r in rows if "rtf" in r]
    return {"window_frames": ORPHEUS_WINDOW_FRAMES, "window_audio_ms": window_audio_ms, "dtype": plan.codec_dtype,
            "noise_blocks": decoder.noise, "rows": rows,
            "max_streams_real_time": max((r["streams"] for r in timed if r["rtf"] <= 1), default=0),
            "max_streams_served": max((r["streams_served"] for r in timed), default=0.0)}


# ---------------------------------------------------------------------- 3. Whisper


def build_whisper(plan: Plan) -> Any:
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(**plan.whisper_config)
    torch.manual_seed(0)
    with torch.device(plan.device):
        model = WhisperForConditionalGeneration._from_config(config, dtype=getattr(torch, plan.codec_dtype))
    return model.eval()


def whisper_decode(model: Any, features: Any, prompt_tokens: int, new_tokens: int) -> tuple[float, float]:
    """Encoder once, then greedy decoding with a KV cache: (encoder ms, decoder ms), GPU drained."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    sync = sync_of(features.device.type)
    batch, vocab = features.shape[0], model.config.vocab_size
    with torch.inference_mode():
        sync()
        started = time.perf_counter()
        encoded = model.model.encoder(input_features=features).last_hidden_state
        sync()
        encoded_at = time.perf_counter()
        cache = {cache_kwarg(model): EncoderDecoderCache(DynamicCache(), DynamicCache())}
        ids = torch.arange(prompt_tokens, device=features.device).repeat(batch, 1) % vocab
        for _ in range(new_tokens):
            out = model(encoder_outputs=(encoded,), decoder_input_ids=ids, use_cache=True, **cache)
            ids = out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
    return (encoded_at - started) * 1000, (time.perf_counter() - encoded_at) * 1000


def whisper_table(plan: Plan, clock: Clock) -> dict:
    import torch

    model = build_whisper(plan)
    cfg = model.config
    mel_frames = 2 * cfg.max_source_positions  # Whisper's encoder takes exactly 30 s of 10 ms frames
    rows = []
    progress(f"\nWhisper encoder + {plan.whisper_tokens}-token greedy decode, {plan.codec_dtype}, "
             f"{plan.utterance_s:g} s utterances (padded to {mel_frames // 100} s)\n"
             f"{'utts':>5} {'encoder ms':>11} {'decode ms':>10} {'total ms':>9} {'ms/utt':>8}")
    for batch in plan.whisper_batches:
        if not clock.left():
            rows.append({"utterances": batch, "skipped": "time budget"})
            continue
        features = torch.randn(batch, cfg.num_mel_bins, mel_frames, device=plan.device,
                               dtype=getattr(torch, plan.codec_dtype))
        whisper_decode(model, features, plan.whisper_prompt_tokens, plan.whisper_tokens)  # warm-up
        runs = [whisper_decode(model, features, plan.whisper_prompt_tokens, plan.whisper_tokens)
                for _ in range(max(2, plan.repeats // 3))]
        encoder_ms = float(np.median([r[0] for r in runs]))
        decode_ms = float(np.median([r[1] for r in runs]))
        total = encoder_ms + decode_ms
        rows.append({"utterances": batch, "encoder_ms": encoder_ms, "decode_ms": decode_ms, "total_ms": total,
                     "ms_per_utterance": total / batch, "ms_per_token_step": decode_ms / plan.whisper_tokens})
        progress(f"{batch:>5} {encoder_ms:>11.1f} {decode_ms:>10.1f} {total:>9.1f} {total / batch:>8.1f}")
    return {"dtype": plan.codec_dtype, "utterance_s": plan.utterance_s, "padded_to_s": mel_frames / 100,
            "prompt_tokens": plan.whisper_prompt_tokens, "new_tokens": plan.whisper_tokens, "rows": rows}


# ---------------------------------------------------------------------- run


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def environment(plan: Plan) -> dict:
    import torch
    import transformers

    cuda = plan.device == "cuda"
    return {"device": plan.device, "device_name": torch.cuda.get_device_name() if cuda else platform.processor()
            or "cpu", "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "python": platform.python_version(), "machine": machine()}


def write_json(path: Path, data: dict) -> None:
    """Temp file + rename: a reader never sees half a file, a crash keeps the last full one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


SECTIONS: dict[str, Callable[[Plan, Clock], dict]] = {"snac": snac_table, "lm": lm_table, "whisper": whisper_table}


def run(plan: Plan, out: Path | None, budget_s: float, smoke: bool) -> int:
    import torch

    warnings.filterwarnings("ignore")  # transformers' deprecation notes would bury the tables
    clock = Clock(budget_s)
    env = environment(plan)
    out = out or ROOT / "bench" / "results" / f"gpu-{'smoke-' if smoke else ''}{device_slug(env['device_name'])}.json"
    data: dict[str, Any] = {"benchmark": "gpu", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": smoke,
                            **env, "plan": asdict(plan), "orpheus_tokens_per_s": ORPHEUS_TOKENS_PER_S}
    if smoke:
        data["note"] = "smoke: tiny shapes on the CPU; checks the code, says nothing about any GPU's speed"
    progress(f"gpu bench on {env['device_name']} (torch {env['torch']}, CUDA {env['cuda']}, "
             f"transformers {env['transformers']}){' SMOKE: tiny shapes' if smoke else ''}")
    failed = 0
    for name, table in SECTIONS.items():
        started = time.perf_counter()
        try:
            data[name] = table(plan, clock)
        except Exception as e:  # one broken table must not lose the others
            failed += 1
            data[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
            progress(f"{name}: FAILED {type(e).__name__}: {e}")
        data[name]["seconds"] = round(time.perf_counter() - started, 1)
        if plan.device == "cuda":
            data[name]["max_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        data["elapsed_s"] = round(clock.elapsed_s(), 1)
        write_json(out, data)
    progress(f"\nwrote {out} in {clock.elapsed_s():.0f} s")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, seconds (CI)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/gpu-<device>.json)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip the rows that would start after this many seconds (default 420)")
    args = parser.parse_args(argv)
    if args.smoke:
        plan = SMOKE
    else:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device (use --smoke for the CPU check)", file=sys.stderr)
            return 2
        plan = FULL
    return run(plan, args.out, args.budget_s, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
