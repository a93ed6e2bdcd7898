"""Conversation quality of the example agents: the whole `voice eval` suite (spoken and typed), pass
rates per category, kept per tag so a change is measured against the agent before it.

bench/results/eval.json holds one run per tag ("before", "after", ...), each exactly the shape of
`voice eval --json` (without the raw events of each turn) plus `tag`, `code` (the commit the server
ran) and `machine`; when a run of
`--baseline-tag` (default "before") exists, the table compares with it: per category the pass
rate now, then, and the ratio now / then.

The server is started from `--tree DIR` (a checkout of the code to measure, e.g.
`git worktree add /tmp/before <commit>` or `git archive <commit> | tar -x -C /tmp/before`) or from
this checkout. A run must stay under ~10 minutes on the shared 2-core box: `--agent`/`--category`/
`--name` run a part and `--merge` adds it to the tag's run (same scenario names are replaced).

When the checks or the scenario expectations change, `--rescore` scores every stored run again
from the facts it holds (transcripts, replies, tools, states), without a server.

Usage: flock /tmp/heavy.lock .venv/bin/python bench/eval.py --tag before --tree /tmp/before [--agent assistant]
       [--merge] [--concurrency 2] [--baseline-tag before]
       .venv/bin/python bench/eval.py --rescore
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import RESULTS, machine  # noqa: E402

from voice.eval.report import Progress, print_table, rescore, to_json, with_summary  # noqa: E402
from voice.eval.runner import RunOptions, run_scenarios  # noqa: E402
from voice.eval.scenario import load_scenarios, select, shipped_scenarios_dir  # noqa: E402

OUT = RESULTS / "eval.json"


def code_of(tree: Path) -> str:
    """The commit a tree is at (+ "-dirty" when it has uncommitted changes), or its path."""
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        marker = tree / ".commit"  # what a `git archive` snapshot can be labelled with
        return marker.read_text().strip() if marker.is_file() else str(tree)


def merged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s scenarios replace those of the same name in `old`; the summary is recomputed."""
    if old is None:
        return new
    names = {sc["name"] for sc in new["scenarios"]}
    kept = [sc for sc in old["scenarios"] if sc["name"] not in names]
    duration = round(old.get("duration_s", 0) + new.get("duration_s", 0), 1)
    return with_summary({**new, "duration_s": duration, "scenarios": kept + new["scenarios"]})


def compare(now: dict[str, Any], then: dict[str, Any], now_tag: str, then_tag: str) -> dict[str, Any]:
    """Per category and overall: pass rates of both runs and their ratio (now / then)."""
    rows = {}
    for name in sorted(set(now["categories"]) | set(then["categories"])):
        a, b = now["categories"].get(name, {}).get("pass_rate"), then["categories"].get(name, {}).get("pass_rate")
        rows[name] = {now_tag: a, then_tag: b, "ratio": round(a / b, 2) if a is not None and b else None}
    a, b = now["summary"]["pass_rate"], then["summary"]["pass_rate"]
    rows["overall"] = {now_tag: a, then_tag: b, "ratio": round(a / b, 2) if a is not None and b else None}
    return rows


def print_comparison(rows: dict[str, Any], now_tag: str, then_tag: str) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    print(f"\n{'category':22} {now_tag:>8} {then_tag:>8} {'ratio':>6}")
    for name, r in rows.items():
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{name:22} {pct(r[now_tag]):>8} {pct(r[then_tag]):>8} {ratio:>6}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", help='name of this run, e.g. "before" or "after"')
    p.add_argument("--rescore", action="store_true",
                   help="run nothing: score every stored run again with the current checks and scenario files")
    p.add_argument("--tree", type=Path, help="start the server from this source tree (default: this checkout)")
    p.add_argument("--merge", action="store_true", help="add to the tag's existing run instead of replacing it")
    p.add_argument("--baseline-tag", default="before", help="the run to compare with (default: before)")
    p.add_argument("--agent", action="append", default=[])
    p.add_argument("--category", action="append", default=[])
    p.add_argument("--name", action="append", default=[])
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--audio-model", default="whisper-base")
    args = p.parse_args()
    if args.rescore:
        return rescore_all(args.baseline_tag)
    if not args.tag:
        p.error("--tag is required (unless --rescore)")

    scenarios = select(load_scenarios([shipped_scenarios_dir()]), agents=args.agent, categories=args.category,
                       names=args.name)
    options = RunOptions(concurrency=args.concurrency, audio_model=args.audio_model, server_code=args.tree)
    print(f"bench/eval.py: {len(scenarios)} scenarios, tag {args.tag!r}, server from {args.tree or ROOT}",
          file=sys.stderr)
    run = asyncio.run(run_scenarios(scenarios, options, Progress(len(scenarios))))
    report = {"tag": args.tag, "code": code_of(args.tree or ROOT), "machine": machine(), **to_json(run)}
    for turn in (t for sc in report["scenarios"] for t in sc["turns"]):
        turn["events"] = []  # the raw events stay in `voice eval --json`; this file is kept in git
    stored = json.loads(OUT.read_text()) if OUT.is_file() else {"benchmark": "eval", "runs": {}}
    runs = stored.setdefault("runs", {})
    runs[args.tag] = merged(runs.get(args.tag) if args.merge else None, report)
    print_table(runs[args.tag])
    write(stored, args.tag, args.baseline_tag)
    return 0


def write(stored: dict[str, Any], tag: str, baseline_tag: str) -> None:
    """Compare `tag` with the baseline run (if both exist) and save the file."""
    runs = stored["runs"]
    if baseline_tag in runs and baseline_tag != tag:
        rows = compare(runs[tag], runs[baseline_tag], tag, baseline_tag)
        stored["comparison"] = {"now": tag, "baseline": baseline_tag, "pass_rates": rows}
        print_comparison(rows, tag, baseline_tag)
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {OUT.relative_to(ROOT)}")


def rescore_all(baseline_tag: str) -> int:
    """Every stored run scored again with today's checks, so runs made apart compare fairly."""
    stored = json.loads(OUT.read_text())
    scenarios = {s.name: s for s in load_scenarios([shipped_scenarios_dir()])}
    for tag, run in stored["runs"].items():
        stored["runs"][tag] = rescore(run, scenarios)
        print(f"\n== {tag}")
        print_table(stored["runs"][tag], failures=0)
    newest = next(reversed(stored["runs"]))
    write(stored, newest, baseline_tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
