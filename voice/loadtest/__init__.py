"""`voice loadtest`: N simulated callers with real speech against a running server, like a service.

Callers arrive staggered over `--ramp-s`, each holds a multi-turn conversation in real time
(voice/loadtest/caller.py) through one door (voice/loadtest/doors.py), while the server's /metrics
are scraped for RSS, CPU, sessions, tasks, threads and queue delays (scrape.py). The result is a
terminal table, `--json FILE` (lost_turns, v2v_ms {p50, p95, p99}, errors, callers, turns, refused,
rss_mb and cpu_cores series, per-turn records) and `--plot FILE.png` (report.py).

Refusals (SERVER_BUSY, HTTP 503) are counted apart: a refused caller was told to come back, a
lost turn is a caller left waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voice.loadtest.caller import Caller, Plan, Results
from voice.loadtest.doors import DOORS
from voice.loadtest.report import Progress, plot, print_table, summarize, write_json
from voice.loadtest.scrape import MetricsSampler, metrics_url
from voice.loadtest.speech import questions

MAX_CALLERS = 100
EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 2, 3


@dataclass
class LoadtestOptions:
    url: str = "ws://127.0.0.1:8765/ws"
    callers: int = 4
    turns: int = 3
    door: str = "ws"
    ramp_s: float = 0.0          # the last caller arrives this long after the first
    token: str | None = None
    duration_s: float | None = None  # keep calling until then (soak); None: one call per caller
    pause_s: float = 1.5
    lost_after_s: float = 15.0
    metrics_url: str | None = None  # None: the server's own /metrics; "" to skip scraping
    scrape_s: float = 2.0


async def run_loadtest(opts: LoadtestOptions, progress: bool = True) -> dict[str, Any]:
    """Run the callers to the end and return the summary (report.summarize)."""
    door = DOORS[opts.door](opts.url, opts.token)
    spoken = await asyncio.to_thread(questions, rate_hz=door.rate_hz)  # Piper on first use: off the loop
    for q in spoken:  # encode every question once, before the clock starts
        door.frames(q)
    plan = Plan(turns=opts.turns, duration_s=opts.duration_s, pause_s=opts.pause_s,
                lost_after_s=opts.lost_after_s, reply_max_s=max(30.0, 2 * opts.lost_after_s))
    results = Results()
    sampler = None
    sampler_task = None
    if opts.metrics_url != "":
        sampler = MetricsSampler(opts.metrics_url or metrics_url(opts.url), opts.token, results.started,
                                 opts.scrape_s)
        sampler_task = asyncio.create_task(sampler.run(), name="loadtest-scrape")
    deadline = time.monotonic() + opts.duration_s if opts.duration_s else None
    callers = [Caller(i, door, spoken, plan, results) for i in range(opts.callers)]
    bar = Progress(results, opts.callers * opts.turns, opts.turns, opts.duration_s)

    async def arrive(caller: Caller) -> None:
        await asyncio.sleep(opts.ramp_s * caller.index / max(opts.callers, 1))
        await caller.run(deadline)

    tasks = [asyncio.create_task(arrive(c), name=f"caller-{c.index}") for c in callers]
    try:
        while not all(t.done() for t in tasks):
            if progress:
                bar.update()
            await asyncio.wait(tasks, timeout=0.5)
        for task in tasks:
            task.result()  # a bug in the tool itself must not pass as a clean run
    finally:
        for task in tasks:
            task.cancel()
        if sampler_task is not None:
            sampler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler_task
    if progress:
        bar.update(final=True)
    if sampler is not None:  # one last look, with every caller gone
        import httpx

        async with httpx.AsyncClient(timeout=5.0) as http:
            await sampler.sample(http)
    settings = {**asdict(opts), "token": "***" if opts.token else None,
                "questions": len(spoken), "reply_max_s": plan.reply_max_s}
    return summarize(results, settings, sampler.series if sampler else [])


def add_parser(sub: Any) -> None:
    p = sub.add_parser("loadtest", help="simulated callers with real speech against a running server")
    p.add_argument("--url", default="ws://127.0.0.1:8765/ws", help="the server (or balancer) WebSocket URL")
    p.add_argument("--callers", type=int, default=4, help=f"simulated callers, 1-{MAX_CALLERS}")
    p.add_argument("--turns", type=int, default=3, help="questions per call")
    p.add_argument("--door", choices=sorted(DOORS), default="ws",
                   help="ws (our protocol), twilio (Media Streams) or realtime (OpenAI Realtime API)")
    p.add_argument("--ramp-s", type=float, default=0.0, help="the callers arrive evenly over this many seconds")
    p.add_argument("--token", default=None, help="bearer token (env VOICE_TOKEN)")
    p.add_argument("--duration-s", type=float, help="keep placing calls for this long (soak)")
    p.add_argument("--pause-s", type=float, default=1.5, help="pause between a reply and the next question (±25 %%)")
    p.add_argument("--lost-after-s", type=float, default=15.0, help="a turn without reply audio by then is lost")
    p.add_argument("--metrics-url", help="where to scrape /metrics (default: the server's own; '' = none)")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--plot", type=Path, help="write a PNG of latency and server RSS/CPU over time")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_loadtest)


def cmd_loadtest(args: argparse.Namespace) -> int:
    import os

    if not 1 <= args.callers <= MAX_CALLERS or args.turns < 1:
        print(f"error: --callers must be 1-{MAX_CALLERS} and --turns at least 1", file=sys.stderr)
        return EXIT_USAGE
    opts = LoadtestOptions(url=args.url, callers=args.callers, turns=args.turns, door=args.door,
                           ramp_s=args.ramp_s, token=args.token or os.environ.get("VOICE_TOKEN"),
                           duration_s=args.duration_s, pause_s=args.pause_s, lost_after_s=args.lost_after_s,
                           metrics_url=args.metrics_url)
    try:
        summary = asyncio.run(run_loadtest(opts, progress=not args.quiet))
    except KeyboardInterrupt:
        return 130
    print_table(summary)
    if args.json:
        write_json(summary, args.json)
    if args.plot:
        plot(summary, args.plot)
    if summary["connected"] == 0 and summary["refused"] == 0:
        return EXIT_UNREACHABLE
    return EXIT_OK
