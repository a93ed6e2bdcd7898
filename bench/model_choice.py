"""Which default models: accuracy against latency, measured through the real server.

* `asr`: Whisper tiny.en (default) vs Whisper base, both with the early final. Every utterance of
  bench/asr_latency.py (real read speech + Piper sentences) and every spoken turn of the shipped
  eval suite (Piper) is streamed in real time; reported per model: WER of the final transcript
  (voice.eval.text.wer) and end of speech -> final transcript (p50/p95).
* `llm`: Qwen2.5-Coder-0.5B (default) vs Qwen2.5-Coder-1.5B on the eval's typed scenarios (the
  agent's pass rate; spoken ones would mix in the ASR) and the voice-to-voice time of its spoken
  latency scenarios; bench/tool_calls.py's accuracy and first-text time are read from its
  results files when present (`bench/tool_calls.py --model qwen2.5-coder-1.5b`).

Baseline = the current default of each (the ratio is candidate / default). Results merge into
bench/results/model_choice.json, one key per part.

Usage: flock /tmp/heavy.lock .venv/bin/python bench/model_choice.py asr|llm [--tree DIR] [--agent assistant]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from asr_latency import stream_one, utterances  # noqa: E402
from common import RESULTS, machine, print_table, summary  # noqa: E402
from voice_to_voice import speech, start_server_in  # noqa: E402

from voice.eval.report import to_json  # noqa: E402
from voice.eval.runner import RunOptions, run_scenarios  # noqa: E402
from voice.eval.scenario import load_scenarios, shipped_scenarios_dir  # noqa: E402
from voice.eval.text import wer  # noqa: E402

OUT = RESULTS / "model_choice.json"
ASR = ("whisper-tiny.en", "whisper-base")
LLM = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def spoken_eval_turns() -> list[tuple[str, Any]]:
    """(text, 16 kHz audio) of every `say:` turn of the shipped scenarios."""
    texts = sorted({t.say for s in load_scenarios([shipped_scenarios_dir()]) for t in s.turns if t.say})
    return [(text, speech(text)) for text in texts]


async def transcribe_all(url: str, items: list[tuple[str, Any]]) -> list[dict]:
    out = []
    for text, audio in items:
        marks = await stream_one(url, audio)
        if "final" in marks and "end_of_speech" in marks:
            out.append({"reference": text, "transcript": marks["text"], "wer": wer(text, marks["text"]),
                        "final_ms": (marks["final"] - marks["end_of_speech"]) * 1000})
    return out


def asr_part(args: argparse.Namespace) -> dict[str, Any]:
    items = (spoken_eval_turns() + utterances())[:args.max_utterances]
    print(f"{len(items)} utterances per model", flush=True)
    result: dict[str, Any] = {}
    for model in ASR:
        server = start_server_in(args.tree, "cpu", {"VOICE_ASR__MODEL": model})
        try:
            rows = asyncio.run(transcribe_all(server.url, items))
        finally:
            server.stop()
        words = sum(len(r["reference"].split()) for r in rows)
        result[model] = {"utterances": len(rows),
                         "wer": sum(r["wer"] * len(r["reference"].split()) for r in rows) / max(1, words),
                         "final_ms": summary([r["final_ms"] for r in rows]), "turns": rows}
    tiny, base = (result[m] for m in ASR)
    result["ratios_base_vs_tiny"] = {"wer": base["wer"] / max(1e-9, tiny["wer"]),
                                     "final_p50": base["final_ms"]["p50"] / tiny["final_ms"]["p50"]}
    print_table("end of speech -> final transcript", [(m, result[m]["final_ms"]) for m in ASR])
    for m in ASR:
        print(f"{m:20} WER {100 * result[m]['wer']:.1f} % over {result[m]['utterances']} utterances")
    return result


def llm_part(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = [s for s in load_scenarios([shipped_scenarios_dir()])
                 if all(t.say is None and t.audio is None for t in s.turns)
                 and (not args.agent or s.agent in args.agent)]
    spoken_latency = [s for s in load_scenarios([shipped_scenarios_dir()]) if s.category == "latency"]
    result: dict[str, Any] = {}
    for model in LLM:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "llm.toml"
            config.write_text(f'[llm]\nmodel = "{model}"\n')
            options = RunOptions(config=str(config), concurrency=args.concurrency, server_code=args.tree,
                                 data_dir=Path(tmp) / "data")
            report = to_json(asyncio.run(run_scenarios(scenarios + spoken_latency, options)))
        v2v = [t["voice_to_voice_ms"] for sc in report["scenarios"] if sc["category"] == "latency"
               for t in sc.get("turns", []) if t.get("voice_to_voice_ms") is not None]
        typed = [sc for sc in report["scenarios"] if sc["category"] != "latency"]
        bench_file = RESULTS / ("tool_calls.json" if model == LLM[0] else f"tool_calls_{model}.json")
        tool_calls = json.loads(bench_file.read_text())["metrics"]["ours"] if bench_file.is_file() else None
        result[model] = {"typed_scenarios": len(typed),
                         "typed_pass_rate": sum(sc["status"] == "passed" for sc in typed) / max(1, len(typed)),
                         "voice_to_voice_ms": summary(v2v), "tool_calls_bench": tool_calls,
                         "failed": [sc["name"] for sc in typed if sc["status"] != "passed"]}
        print(f"{model:20} typed pass rate {100 * result[model]['typed_pass_rate']:.0f} % of {len(typed)}, "
              f"spoken latency turns p50 {result[model]['voice_to_voice_ms']['p50']:.0f} ms", flush=True)
    small, large = (result[m] for m in LLM)
    result["ratios_1.5b_vs_0.5b"] = {
        "typed_pass_rate": large["typed_pass_rate"] / max(1e-9, small["typed_pass_rate"]),
        "voice_to_voice_p50": large["voice_to_voice_ms"]["p50"] / small["voice_to_voice_ms"]["p50"]}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("asr", "llm"))
    ap.add_argument("--tree", type=Path, help="run the servers from this checkout (default: this working tree)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--agent", action="append", default=[], help="llm: only this agent's typed scenarios")
    ap.add_argument("--max-utterances", type=int, default=24, help="asr: the eval's spoken turns first (10 min budget)")
    args = ap.parse_args()
    data = json.loads(OUT.read_text()) if OUT.is_file() else {"benchmark": "model_choice"}
    data[args.part] = {"machine": machine(), **(asr_part(args) if args.part == "asr" else llm_part(args))}
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
