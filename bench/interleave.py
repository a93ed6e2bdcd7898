"""Interleaving on the llama.cpp contexts: replies that give their context up between speakable
pieces (llm.interleave, on) against replies that hold it to the end (off = the baseline), same run.

For each N in --callers and each mode, a fresh `voice serve` (cpu profile: 2 llama.cpp contexts)
gets `voice loadtest`: N callers arriving every --arrive-every-s seconds, each asking --turns
questions out loud. Admission control is off so both modes carry the same load. What interleaving
should change is the tail: a turn that arrives while every context generates another caller's
reply no longer waits for those replies to end (the soak's lost turn and its p99 were that wait).

Each point holds the shared CPU lock (/tmp/heavy.lock) on its own, so do NOT wrap this script in
`flock`. Usage: .venv/bin/python bench/interleave.py [--callers 4 6] [--turns 4]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from capacity import load_arguments, measure  # noqa: E402
from common import write_results  # noqa: E402


def ratio(on: float | None, off: float | None) -> str:
    return f"{on / off:.2f}" if on and off else "-"


def print_table(points: list[dict]) -> None:
    print("\nInterleaving replies on the llama.cpp contexts (ratio: on / off, same run)")
    print(f"{'callers':>7} {'interleave':>10} {'turns':>5} {'lost':>5} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} "
          f"{'max s':>6} {'1st token p95 s':>15} {'p95 ratio':>9} {'p99 ratio':>9}")
    off = {p["callers"]: p for p in points if not p["interleave"]}
    for p in sorted(points, key=lambda p: (p["callers"], not p["interleave"])):
        v, base = p["v2v_ms"], off[p["callers"]]["v2v_ms"]
        first = p["server_stages_ms"].get("first_llm_token", {}).get("p95")
        ratios = (ratio(v["p95"], base["p95"]), ratio(v["p99"], base["p99"])) if p["interleave"] else ("", "")
        print(f"{p['callers']:>7} {'on' if p['interleave'] else 'off':>10} {p['turns']:>5} {p['lost_turns']:>5} "
              f"{v['p50'] / 1000:>6.2f} {v['p95'] / 1000:>6.2f} {v['p99'] / 1000:>6.2f} {v['max'] / 1000:>6.2f} "
              f"{(first or 0) / 1000:>15.2f} {ratios[0]:>9} {ratios[1]:>9}")


def main() -> None:
    args = load_arguments(__doc__.splitlines()[0], [4, 6]).parse_args()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for callers in args.callers:
            for interleave in (True, False):
                print(f"\n== {callers} callers, interleave {'on' if interleave else 'off'}", flush=True)
                point = measure(callers, args.turns, False, args.arrive_every_s, Path(tmp), not args.no_lock,
                                {"VOICE_LLM__INTERLEAVE": "true" if interleave else "false"})
                points.append({"interleave": interleave, **point})
    print_table(points)
    write_results("interleave", {
        "settings": {"profile": "cpu", "llm_contexts": 2, "admission": False, "turns_per_caller": args.turns,
                     "arrive_every_s": args.arrive_every_s, "lost_after_s": 15},
        "points": points})


if __name__ == "__main__":
    main()
