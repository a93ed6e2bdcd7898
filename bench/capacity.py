"""Capacity: where voice-to-voice latency breaks as callers are added, with and without admission control.

For each N in --callers (1 2 4 8 16) and each mode (admission on, admission off = the baseline,
measured in the same run), a fresh `voice serve` (cpu profile) gets `voice loadtest` (the real tool,
a subprocess): N callers arriving every --arrive-every-s seconds, each asking --turns questions
out loud and listening to the replies. Reported per point: voice-to-voice p50/p95/p99, lost turns
(no reply within 15 s), refused callers (SERVER_BUSY), and the session limit the admission control
had learned by the end. The knee: with admission, lost turns stay 0 and p95 stays near the
capacity's while the callers past it get SERVER_BUSY; without, every caller is let in and all of
them wait.

Each point holds the shared CPU lock (/tmp/heavy.lock) on its own, so do NOT wrap this script in
`flock`. Usage: .venv/bin/python bench/capacity.py [--callers 1 2 4 8 16] [--turns 4]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from common import RESULTS, write_results  # noqa: E402
from conftest import start_server  # noqa: E402

LOCK = Path("/tmp/heavy.lock")


@contextlib.contextmanager
def heavy_lock(enabled: bool = True) -> Iterator[None]:
    """The machine's shared CPU lock (the same file `flock /tmp/heavy.lock` takes)."""
    if not enabled:
        yield
        return
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def loadtest(url: str, out: Path, *args: str, timeout_s: float = 1800) -> dict:
    """Run `voice loadtest` (the real CLI) and return its JSON summary; `timeout_s` must cover a
    --duration-s run plus its last calls."""
    cmd = [sys.executable, "-m", "voice.cli", "loadtest", "--url", url, "--json", str(out), "--quiet", *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"voice loadtest failed ({result.returncode}):\n{result.stderr[-3000:]}")
    print(result.stdout.strip(), flush=True)
    return json.loads(out.read_text())


def measure(callers: int, turns: int, admission: bool, arrive_every_s: float, tmp: Path, lock: bool,
            settings: dict[str, str] | None = None) -> dict:
    """One point: a fresh server (`settings`: more VOICE_* variables), one load test, the numbers
    that matter."""
    env = {"VOICE_SERVER__ADMISSION__ENABLED": "true" if admission else "false",
           "VOICE_SERVER__MAX_SESSIONS": "100",  # the fixed cap out of the way: what admission does alone
           **(settings or {})}
    with heavy_lock(lock):
        server = start_server(tmp, env=env)
        try:
            summary = loadtest(server.url, tmp / f"lt_{callers}_{int(admission)}.json", "--callers", str(callers),
                               "--turns", str(turns), "--ramp-s", str(arrive_every_s * (callers - 1)))
        finally:
            server.stop()
    series = summary["server_series"]
    limits = [p["admission_limit"] for p in series if "admission_limit" in p]
    rss = [mb for _, mb in summary["rss_mb"]]
    return {
        "callers": callers, "admission": admission, "turns": summary["turns"], "answered": summary["answered"],
        "lost_turns": summary["lost_turns"], "refused": summary["refused"], "connected": summary["connected"],
        "errors": summary["errors"], "v2v_ms": summary["v2v_ms"],
        "admission_limit_end": limits[-1] if limits else None, "admission_limit_min": min(limits, default=None),
        "rss_mb_peak": max(rss, default=None),
        "cpu_cores_mean": round(sum(c for _, c in summary["cpu_cores"]) / max(len(summary["cpu_cores"]), 1), 2),
        "server_stages_ms": {k: {"p50": v["p50"], "p95": v["p95"]} for k, v in summary["server_stages_ms"].items()},
    }


def capacity(points: list[dict]) -> int | None:
    """What the admission control reported: its limit at the end of the largest run with admission."""
    runs = [p for p in points if p["admission"] and p["admission_limit_end"] is not None]
    return int(max(runs, key=lambda p: p["callers"])["admission_limit_end"]) if runs else None


def print_knee(points: list[dict], cap: int | None) -> None:
    print(f"\nCapacity knee (admission control reports {cap} sessions)")
    print(f"{'callers':>7} {'admission':>9} {'conn':>5} {'refused':>7} {'turns':>5} {'lost':>5} "
          f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'limit':>5} {'p95 ratio on/off':>17}")
    off = {p["callers"]: p for p in points if not p["admission"]}
    for p in sorted(points, key=lambda p: (p["callers"], not p["admission"])):
        v = p["v2v_ms"]
        base = off.get(p["callers"], {}).get("v2v_ms", {}).get("p95")
        ratio = f"{v['p95'] / base:.2f}" if p["admission"] and base and v["p95"] else ""

        def s(ms: float | None) -> str:
            return f"{ms / 1000:.2f}" if ms is not None else "-"
        print(f"{p['callers']:>7} {'on' if p['admission'] else 'off':>9} {p['connected']:>5} {p['refused']:>7} "
              f"{p['turns']:>5} {p['lost_turns']:>5} {s(v['p50']):>7} {s(v['p95']):>7} {s(v['p99']):>7} "
              f"{p['admission_limit_end'] or '-':>5} {ratio:>17}")


def plot(points: list[dict], cap: int | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, counts) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for admission, style in ((False, "o--"), (True, "s-")):
        pts = sorted((p for p in points if p["admission"] == admission), key=lambda p: p["callers"])
        xs = [p["callers"] for p in pts]
        label = "admission on" if admission else "admission off"
        lat.plot(xs, [(p["v2v_ms"]["p95"] or 0) / 1000 for p in pts], style, label=f"p95, {label}")
        lat.plot(xs, [(p["v2v_ms"]["p50"] or 0) / 1000 for p in pts], style, alpha=0.4, label=f"p50, {label}")
        counts.plot(xs, [p["lost_turns"] for p in pts], style, label=f"lost turns, {label}")
        if admission:
            counts.plot(xs, [p["refused"] for p in pts], "^:", label="refused callers (SERVER_BUSY), admission on")
    if cap:
        for axis in (lat, counts):
            axis.axvline(cap, color="grey", ls=":", label="capacity reported by admission")
    lat.axhline(15, color="tab:red", lw=0.8, ls="--", label="lost bound (15 s)")
    lat.set_ylabel("voice-to-voice (s)")
    lat.set_xscale("log", base=2)
    lat.legend(fontsize=7)
    counts.set_xlabel("callers")
    counts.set_ylabel("count")
    counts.legend(fontsize=7)
    fig.suptitle("Capacity of one server process (cpu profile)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_arguments(description: str, callers: list[int]) -> argparse.ArgumentParser:
    """The options every load-point benchmark takes (this one and bench/interleave.py)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--callers", type=int, nargs="+", default=callers)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--arrive-every-s", type=float, default=2.0, help="a new caller every this many seconds")
    ap.add_argument("--no-lock", action="store_true", help="do not take /tmp/heavy.lock per point")
    return ap


def main() -> None:
    ap = load_arguments(__doc__.splitlines()[0], [1, 2, 4, 8, 16])
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for callers in args.callers:
            for admission in (True, False):
                print(f"\n== {callers} callers, admission {'on' if admission else 'off'}", flush=True)
                points.append(measure(callers, args.turns, admission, args.arrive_every_s, Path(tmp),
                                      not args.no_lock))
    cap = capacity(points)
    print_knee(points, cap)
    name = f"capacity{args.tag}"
    plot(points, cap, RESULTS / f"{name}.png")
    write_results(name, {
        "settings": {"profile": "cpu", "turns_per_caller": args.turns, "arrive_every_s": args.arrive_every_s,
                     "lost_after_s": 15, "max_sessions": 100, "admission_defaults": "voice/server/admission.py"},
        "capacity_sessions": cap, "points": points})


if __name__ == "__main__":
    main()
