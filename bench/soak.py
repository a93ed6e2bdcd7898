"""Soak: the server at its measured capacity for a long time: no lost turns, no growing memory, no leaks.

A fresh `voice serve` (cpu profile, admission on) takes `voice loadtest --duration-s` twice: a
warm-up (--warmup-s: every engine's buffers and caches reach their working size) and the soak
itself (--minutes), with callers that hang up after --turns questions and call again, so
thousands of sessions come and go. Between and after the phases the server is left idle for a few
seconds and its /metrics read: RSS, asyncio tasks and threads at idle after the warm-up are the
baseline for the same numbers at idle after the soak (a leak is what is left when everyone has
hung up). The RSS series during the soak is fitted with a line (MB per hour).

Pass: 0 lost turns, RSS growth < 5 % (idle after soak vs idle after warm-up), tasks and threads back
to the baseline. Callers default to the capacity bench/capacity.py found (bench/results/capacity.json).

Holds the shared CPU lock (/tmp/heavy.lock) for the whole run: do NOT wrap it in `flock`.
Usage: .venv/bin/python bench/soak.py [--minutes 30] [--callers N] [--warmup-s 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from capacity import heavy_lock, loadtest  # noqa: E402
from common import RESULTS, write_results  # noqa: E402
from conftest import start_server  # noqa: E402

from voice.loadtest.scrape import metrics_url, parse  # noqa: E402

IDLE_S = 5.0  # after the last caller hangs up, before the idle reading
MAX_RSS_GROWTH = 0.05


async def scrape(url: str) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as http:
        reply = await http.get(metrics_url(url))
        reply.raise_for_status()
        return parse(reply.text)


def idle_reading(url: str) -> dict:
    time.sleep(IDLE_S)
    point = asyncio.run(scrape(url))
    return {k: point.get(k) for k in ("rss_mb", "asyncio_tasks", "threads", "sessions")}


def rss_slope_mb_per_hour(series: list[dict]) -> float | None:
    points = [(p["t_s"], p["rss_mb"]) for p in series if "rss_mb" in p]
    if len(points) < 3:
        return None
    t, mb = np.array(points).T
    return float(np.polyfit(t / 3600, mb, 1)[0])


def default_callers() -> int:
    path = RESULTS / "capacity.json"
    if path.is_file() and (cap := json.loads(path.read_text()).get("capacity_sessions")):
        return int(cap)
    return 2


def plot(warm: dict, soak: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    offset = warm["duration_s"]
    for phase, shift in ((warm, 0.0), (soak, offset)):
        turns = [(t["at_s"] + shift, t["v2v_ms"] / 1000) for t in phase["per_turn"] if t["v2v_ms"] is not None]
        if turns:
            lat.scatter(*zip(*turns, strict=True), s=6)
        rss = [(p["t_s"] + shift, p["rss_mb"]) for p in phase["server_series"] if "rss_mb" in p]
        if rss:
            mem.plot(*zip(*rss, strict=True), color="tab:blue")
    lat.axvline(offset, color="grey", ls=":")
    mem.axvline(offset, color="grey", ls=":", label="warm-up ends")
    lat.set_ylabel("voice-to-voice (s)")
    mem.set_ylabel("server RSS (MB)")
    mem.set_xlabel("time (s)")
    mem.legend()
    fig.suptitle(f"Soak: {soak['settings']['callers']} callers, {soak['duration_s'] / 60:.0f} min")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def worst_turns(phase: dict, keep: int = 5) -> list[dict]:
    """The lost turns and the `keep` slowest answered ones, with what was asked, heard and said and
    each server stage: what a reader needs to tell a queue from a mishearing."""
    fields = ("at_s", "question", "heard", "reply", "v2v_ms", "lost", "stages_ms")
    lost = [t for t in phase["per_turn"] if t["lost"]]
    slow = sorted((t for t in phase["per_turn"] if not t["lost"] and t["v2v_ms"] is not None),
                  key=lambda t: t["v2v_ms"])[-keep:][::-1]
    return [{k: t.get(k) for k in fields} for t in lost + slow]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-s", type=float, default=120.0)
    ap.add_argument("--callers", type=int, default=None, help="default: the capacity in bench/results/capacity.json")
    ap.add_argument("--turns", type=int, default=4, help="questions per call before the caller hangs up")
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()
    callers = args.callers or default_callers()
    common = ["--callers", str(callers), "--turns", str(args.turns), "--ramp-s", str(2.0 * (callers - 1))]
    print(f"soak: {callers} callers, warm-up {args.warmup_s:.0f} s, then {args.minutes:g} min", flush=True)
    with tempfile.TemporaryDirectory() as tmp, heavy_lock(not args.no_lock):
        server = start_server(Path(tmp), env={"VOICE_SERVER__ADMISSION__ENABLED": "true"})
        try:
            fresh = idle_reading(server.url)
            warm = loadtest(server.url, Path(tmp) / "warm.json", *common, "--duration-s", str(args.warmup_s))
            baseline = idle_reading(server.url)
            soak = loadtest(server.url, Path(tmp) / "soak.json", *common, "--duration-s", str(args.minutes * 60),
                            timeout_s=args.minutes * 60 + 600)  # the last calls finish after the duration
            end = idle_reading(server.url)
        finally:
            server.stop()
    growth = (end["rss_mb"] - baseline["rss_mb"]) / baseline["rss_mb"]
    slope = rss_slope_mb_per_hour(soak["server_series"])
    checks = {
        "lost_turns_0": soak["lost_turns"] == 0 and warm["lost_turns"] == 0,
        "rss_growth_under_5_percent": growth < MAX_RSS_GROWTH,
        "asyncio_tasks_back_to_baseline": end["asyncio_tasks"] == baseline["asyncio_tasks"],
        "threads_back_to_baseline": end["threads"] == baseline["threads"],
        "no_errors": not soak["errors"],
    }
    print(f"\nidle readings: fresh {fresh}\n  after warm-up {baseline}\n  after soak    {end}")
    print(f"RSS growth after warm-up: {growth * 100:+.2f} % (slope during the soak {slope:+.0f} MB/h)")
    print(f"soak: {soak['calls']} calls, {soak['turns']} turns, lost {soak['lost_turns']}, refused {soak['refused']}, "
          f"errors {soak['errors']}, v2v p50 {soak['v2v_ms']['p50']} ms p95 {soak['v2v_ms']['p95']} ms")
    print("checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    name = f"soak{args.tag}"
    plot(warm, soak, RESULTS / f"{name}.png")
    write_results(name, {
        "settings": {"profile": "cpu", "callers": callers, "turns_per_call": args.turns, "minutes": args.minutes,
                     "warmup_s": args.warmup_s},
        "checks": checks, "rss_growth_fraction": round(growth, 4), "rss_slope_mb_per_hour": slope,
        "idle": {"fresh": fresh, "after_warmup": baseline, "after_soak": end},
        "soak": {k: soak[k] for k in ("calls", "connected", "turns", "answered", "lost_turns", "refused", "errors",
                                      "v2v_ms", "duration_s", "server_stages_ms", "rss_mb", "cpu_cores")},
        "warmup": {k: warm[k] for k in ("calls", "turns", "lost_turns", "refused", "errors", "v2v_ms")},
        "worst_turns": {"warmup": worst_turns(warm), "soak": worst_turns(soak)},
    })


if __name__ == "__main__":
    main()
