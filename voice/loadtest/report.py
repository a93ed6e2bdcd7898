"""What a load test found: the summary dict (--json), the terminal table, the progress line, the plot."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from voice.loadtest.caller import Results, TurnResult


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 1), "p95": round(float(np.percentile(arr, 95)), 1),
            "p99": round(float(np.percentile(arr, 99)), 1), "max": round(float(arr.max()), 1),
            "mean": round(float(arr.mean()), 1), "n": len(values)}


def stage_summary(turns: list[TurnResult]) -> dict[str, dict[str, float | None]]:
    """The server's own per-stage timings (turn_metrics events), where the door carries them."""
    names = sorted({name for t in turns if t.stages_ms for name in t.stages_ms})
    return {name: percentiles([t.stages_ms[name] for t in turns if t.stages_ms and name in t.stages_ms])
            for name in names}


def summarize(results: Results, settings: dict[str, Any], series: list[dict]) -> dict[str, Any]:
    turns = results.turns
    answered = [t.v2v_ms for t in turns if t.v2v_ms is not None]
    return {
        "callers": settings["callers"],
        "turns": len(turns),
        "planned_turns": settings["callers"] * settings["turns"] if settings.get("duration_s") is None else None,
        "answered": sum(1 for t in turns if not t.lost),
        "lost_turns": sum(1 for t in turns if t.lost),
        "v2v_ms": percentiles(answered),
        "refused": results.refused,
        "refused_by_code": dict(results.refused_codes),
        "errors": dict(results.errors),
        "calls": results.calls,
        "connected": results.connected,
        "duration_s": round(results.now_s(), 1),
        "server_stages_ms": stage_summary(turns),
        "rss_mb": [[p["t_s"], p["rss_mb"]] for p in series if "rss_mb" in p],
        "cpu_cores": [[p["t_s"], p["cpu_cores"]] for p in series if "cpu_cores" in p],
        "server_series": series,
        "settings": settings,
        "per_turn": [vars(t) for t in turns],
    }


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} s"


def print_table(summary: dict[str, Any], out: TextIO = sys.stdout) -> None:
    s = summary["settings"]
    v = summary["v2v_ms"]
    planned = summary["planned_turns"]
    lines = [
        f"\nvoice loadtest: {s['callers']} callers x {s['turns']} turns, door {s['door']}, ramp {s['ramp_s']} s"
        f"{', duration ' + str(s['duration_s']) + ' s' if s.get('duration_s') else ''} -> {s['url']}",
        f"{'calls':14} {summary['calls']} placed, {summary['connected']} connected, "
        f"{summary['refused']} refused {summary['refused_by_code'] or ''}".rstrip(),
        f"{'turns':14} {summary['turns']} asked{f' of {planned}' if planned else ''}, {summary['answered']} answered, "
        f"{summary['lost_turns']} lost (no reply within {s['lost_after_s']:g} s)",
        f"{'voice-to-voice':14} p50 {_fmt_ms(v['p50'])}  p95 {_fmt_ms(v['p95'])}  p99 {_fmt_ms(v['p99'])}  "
        f"max {_fmt_ms(v['max'])}  (n={v['n']}; last speech sample sent -> first reply audio received)",
        f"{'errors':14} {summary['errors'] or 'none'}",
    ]
    rss = [mb for _, mb in summary["rss_mb"]]
    cpu = [c for _, c in summary["cpu_cores"]]
    if rss:
        lines.append(f"{'server RSS':14} {rss[0]:.0f} MB at start, {rss[-1]:.0f} MB at end, peak {max(rss):.0f} MB")
    if cpu:
        lines.append(f"{'server CPU':14} mean {np.mean(cpu):.2f} cores, peak {max(cpu):.2f}")
    stages = summary["server_stages_ms"]
    if stages:
        lines.append(f"{'server stages':14} " + ", ".join(
            f"{k} p50 {_fmt_ms(x['p50'])}/p95 {_fmt_ms(x['p95'])}" for k, x in stages.items()))
    print("\n".join(lines), file=out, flush=True)


class Progress:
    """One status line on stderr: a bar on a terminal, a plain line every 10 s otherwise."""

    WIDTH = 30

    def __init__(self, results: Results, planned: int, turns_per_call: int, duration_s: float | None,
                 out: TextIO = sys.stderr):
        self.results, self.planned, self.duration_s, self.out = results, planned, duration_s, out
        self.turns_per_call = turns_per_call
        self.tty = out.isatty()
        self._last_line = 0.0

    def update(self, final: bool = False) -> None:
        r = self.results
        if self.duration_s:
            done = min(r.now_s() / self.duration_s, 1.0)
        else:
            skipped = (r.refused + sum(r.errors.values())) * self.turns_per_call  # roughly: calls that ended early
            done = min((len(r.turns) + skipped) / max(self.planned, 1), 1.0)
        answered = [t.v2v_ms for t in r.turns if t.v2v_ms is not None]
        p50 = f"{np.percentile(answered, 50) / 1000:.2f} s" if answered else "-"
        lost = sum(1 for t in r.turns if t.lost)
        bar = "#" * int(done * self.WIDTH) + "." * (self.WIDTH - int(done * self.WIDTH))
        line = (f"[{bar}] {len(r.turns)} turns, {r.active} on the line, refused {r.refused}, lost {lost}, "
                f"errors {sum(r.errors.values())}, v2v p50 {p50}, {r.now_s():.0f} s")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=self.out, flush=True)
        elif final or time.monotonic() - self._last_line >= 10:
            self._last_line = time.monotonic()
            print(line, file=self.out, flush=True)


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=str) + "\n")


def plot(summary: dict[str, Any], path: Path) -> None:
    """Voice-to-voice per turn (and lost turns) over time; the server's sessions and admission
    limit; its RSS and CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = summary["per_turn"]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 1.4, 2]})
    ok = [(t["at_s"], t["v2v_ms"] / 1000) for t in turns if t["v2v_ms"] is not None and not t["lost"]]
    late = [(t["at_s"], t["v2v_ms"] / 1000) for t in turns if t["v2v_ms"] is not None and t["lost"]]
    never = [t["at_s"] for t in turns if t["v2v_ms"] is None]
    if ok:
        top.scatter(*zip(*ok, strict=True), s=14, label="answered")
    if late:
        top.scatter(*zip(*late, strict=True), s=14, color="tab:orange", label="lost (late)")
    for x in never:
        top.axvline(x, color="tab:red", alpha=0.4)
    top.axhline(summary["settings"]["lost_after_s"], color="tab:red", ls="--", lw=0.8, label="lost bound")
    top.set_ylabel("voice-to-voice (s)")
    s = summary["settings"]
    v = summary["v2v_ms"]
    top.set_title(f"{s['callers']} callers, door {s['door']}: p50 {_fmt_ms(v['p50'])}, p95 {_fmt_ms(v['p95'])}, "
                  f"lost {summary['lost_turns']}, refused {summary['refused']}")
    top.legend(loc="upper left", fontsize=8)
    series = summary["server_series"]
    for key, label, style in (("sessions", "sessions", "-"), ("admission_limit", "admission limit", "--")):
        points = [(p["t_s"], p[key]) for p in series if key in p]
        if points:
            middle.step(*zip(*points, strict=True), style, where="post", label=label)
    middle.set_ylim(0, max([p.get("sessions", 0) for p in series] + [s["callers"]]) + 1)
    middle.set_ylabel("server")
    middle.legend(loc="upper left", fontsize=8)
    if summary["rss_mb"]:
        bottom.plot(*zip(*summary["rss_mb"], strict=True), color="tab:blue", label="RSS (MB)")
    bottom.set_ylabel("server RSS (MB)")
    bottom.set_xlabel("time since start (s)")
    if summary["cpu_cores"]:
        cpu_axis = bottom.twinx()
        cpu_axis.plot(*zip(*summary["cpu_cores"], strict=True), color="tab:green", alpha=0.6)
        cpu_axis.set_ylabel("server CPU (cores)", color="tab:green")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
