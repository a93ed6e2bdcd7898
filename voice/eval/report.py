"""Results out: the JSON report (`--json`), the terminal table and the progress line.

The JSON is the one machine-readable form (bench/eval.py writes the same shape); the terminal
table and the HTML page (html_report.py) are views of it.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict
from typing import Any, TextIO

from voice.eval.checks import ToolUse, TurnFacts, check_turn
from voice.eval.evaluate import ScenarioResult, TurnResult
from voice.eval.runner import EvalRun
from voice.eval.scenario import Scenario, Turn

FORMAT = 1
_QUIET_EVENTS = ("transcript_partial",)  # many per utterance and they say nothing the final does not


def _events(turn: TurnResult) -> list[dict[str, Any]]:
    return [e for e in turn.events if e["type"] not in _QUIET_EVENTS
            and not (e["type"] == "agent_text" and not e.get("final"))]


def turn_json(t: TurnResult) -> dict[str, Any]:
    f = t.facts
    return {
        "index": t.index, "line": t.line, "kind": t.kind, "input": t.input, "status": t.status,
        "transcript": f.transcript, "reply": f.reply, "heard_text": t.heard_text,
        "audio_transcript": f.audio_transcript, "tools": [asdict(u) for u in f.tools], "state": f.state,
        "slots": f.slots, "interrupted": f.interrupted, "voice_to_voice_ms": f.voice_to_voice_ms,
        "started_s": t.started_s, "ended_s": t.ended_s, "first_audio_s": t.first_audio_s, "missing": t.missing,
        "checks": [asdict(c) for c in t.checks], "events": _events(t),
    }


def scenario_json(r: ScenarioResult) -> dict[str, Any]:
    s = r.scenario
    return {"name": s.name, "file": str(s.path) if s.path else None, "agent": s.agent, "category": s.category,
            "tags": s.tags, "description": s.description, "status": r.status, "error": r.error,
            "duration_s": r.duration_s, "turns": [turn_json(t) for t in r.turns]}


def rate(passed: int, total: int) -> float | None:
    return round(passed / total, 4) if total else None


def summarize(scenarios: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall summary, per-category {scenarios, passed, pass_rate}) of scenario reports
    (`scenario_json`), so merged reports are summed the same way."""
    cats: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        c = cats.setdefault(sc["category"], {"scenarios": 0, "passed": 0})
        c["scenarios"] += 1
        c["passed"] += sc["status"] == "passed"
    for c in cats.values():
        c["pass_rate"] = rate(c["passed"], c["scenarios"])
    turns = [t for sc in scenarios for t in sc["turns"]]
    ran = [t for t in turns if t["status"] != "not_run"]
    turns_passed = sum(t["status"] == "passed" for t in ran)
    failed_checks = Counter(c["name"] for t in ran for c in t["checks"] if not c["ok"])
    passed = sum(sc["status"] == "passed" for sc in scenarios)
    summary = {"scenarios": len(scenarios), "passed": passed,
               "failed": sum(sc["status"] == "failed" for sc in scenarios),
               "errors": sum(sc["status"] == "error" for sc in scenarios), "pass_rate": rate(passed, len(scenarios)),
               "turns": len(turns), "turns_run": len(ran), "turns_passed": turns_passed,
               "turn_pass_rate": rate(turns_passed, len(ran)), "failed_checks": dict(failed_checks.most_common())}
    return summary, dict(sorted(cats.items()))


def with_summary(report: dict[str, Any]) -> dict[str, Any]:
    """`report` with its summary and categories (re)computed from its scenarios."""
    summary, categories = summarize(report["scenarios"])
    head = {k: v for k, v in report.items() if k not in ("summary", "categories", "scenarios")}
    return {**head, "summary": summary, "categories": categories, "scenarios": report["scenarios"]}


def to_json(run: EvalRun) -> dict[str, Any]:
    report = {"tool": "voice eval", "format": FORMAT, "started": run.started, "duration_s": run.duration_s,
              "url": run.url, "models": run.models, "server_log": run.server_log, **run.extra,
              "scenarios": [scenario_json(r) for r in run.results]}
    return with_summary(report)


# ---------------------------------------------------------------- terminal


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def print_table(report: dict[str, Any], out: TextIO = sys.stdout, *, failures: int = 40) -> None:
    """Pass rate per category and overall, then the failed checks (quoting the agent)."""
    print(f"\n{'category':22} {'scenarios':>9} {'passed':>7} {'rate':>6}", file=out)
    for name, c in report["categories"].items():
        print(f"{name:22} {c['scenarios']:>9} {c['passed']:>7} {percent(c['pass_rate']):>6}", file=out)
    s = report["summary"]
    print(f"{'overall':22} {s['scenarios']:>9} {s['passed']:>7} {percent(s['pass_rate']):>6}"
          f"   (turns {s['turns_passed']}/{s['turns_run']} passed, {percent(s['turn_pass_rate'])})", file=out)
    if s["failed_checks"]:
        print("failed checks: " + ", ".join(f"{k} {v}" for k, v in s["failed_checks"].items()), file=out)
    shown = 0
    for sc in report["scenarios"]:
        if sc["status"] == "error":
            print(f"ERROR {sc['name']}: {sc['error']}", file=out)
        for t in sc["turns"]:
            for c in (c for c in t["checks"] if not c["ok"]):
                if shown == failures:
                    print("... more failures in the JSON/HTML report", file=out)
                    return
                where = f"{sc['file']}:{t['line']}" if sc["file"] else sc["name"]
                print(f"FAIL {sc['name']} turn {t['index'] + 1} ({where}) {c['name']}: {c['detail']}", file=out)
                shown += 1


class Progress:
    """`[#####-----] 12/45 passed 7 failed 5` on a terminal (one line, redrawn); one line per
    scenario otherwise (CI logs)."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 24):
        self.total, self.out, self.width = total, out, width
        self.done = self.passed = 0
        self.tty = out.isatty()

    def __call__(self, result: ScenarioResult) -> None:
        self.done += 1
        self.passed += result.status == "passed"
        failed = self.done - self.passed
        if self.tty:
            filled = self.width * self.done // max(1, self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            print(f"\r[{bar}] {self.done}/{self.total} passed {self.passed} failed {failed}  "
                  f"{result.scenario.name[:30]:30}", end="" if self.done < self.total else "\n",
                  file=self.out, flush=True)
        else:
            print(f"[{self.done}/{self.total}] {result.status:7} {result.scenario.name}"
                  f" ({result.duration_s:.0f} s)", file=self.out, flush=True)


# ---------------------------------------------------------------- re-scoring


def rescore(report: dict[str, Any], scenarios: dict[str, Scenario]) -> dict[str, Any]:
    """A stored report scored again with the current checks and scenario expectations, from the
    facts it holds (transcript, reply, tools, state, ...): runs made before a check changed stay
    comparable with new ones, without replaying them. Scenarios whose file is gone or has other
    turns now are kept as they were."""
    out = []
    for sc in report["scenarios"]:
        scenario = scenarios.get(sc["name"])
        if scenario is None or len(scenario.turns) != len(sc["turns"]) or sc["status"] == "error":
            out.append(sc)
            continue
        turns = [_rescore_turn(t, turn) for t, turn in zip(sc["turns"], scenario.turns, strict=True)]
        status = "passed" if all(t["status"] == "passed" for t in turns) else "failed"
        out.append({**sc, "status": status, "turns": turns})
    return with_summary({**report, "scenarios": out})


def _rescore_turn(t: dict[str, Any], turn: Turn) -> dict[str, Any]:
    if t["status"] == "not_run":
        return t
    facts = TurnFacts(kind=t["kind"], user_words=turn.words, transcript=t["transcript"], reply=t["reply"],
                      tools=[ToolUse(**u) for u in t["tools"]], state=t["state"], slots=t["slots"],
                      interrupted=t["interrupted"], voice_to_voice_ms=t["voice_to_voice_ms"],
                      audio_transcript=t["audio_transcript"])
    checks = check_turn(facts, turn.expect, audio_checked=t["audio_transcript"] is not None)
    checks = [c for c in t["checks"] if c["name"] == "completed"] + [asdict(c) for c in checks]
    return {**t, "checks": checks, "status": "passed" if all(c["ok"] for c in checks) else "failed"}
