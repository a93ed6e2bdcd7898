"""From turn logs to results: which reply belongs to which turn, what it said, which tools ran,
and the checks. Pure functions of the logs, so they are tested without a server.

A reply belongs to the turn during which its first event arrived (its server turn number is
"owned" by that turn); events of that reply that arrive later — the end of a reply cut by a
barge-in arrives during the barge-in turn — still count for the turn that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voice.eval.checks import Check, ToolUse, TurnFacts, check_turn
from voice.eval.scenario import Scenario
from voice.eval.session import TurnLog


@dataclass
class TurnResult:
    index: int
    line: int
    kind: str
    input: str
    facts: TurnFacts
    checks: list[Check]
    status: str                      # passed | failed | not_run
    started_s: float = 0.0
    ended_s: float = 0.0
    first_audio_s: float | None = None
    heard_text: str | None = None    # what the user heard of a reply that was cut
    missing: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass
class ScenarioResult:
    scenario: Scenario
    status: str                      # passed | failed | error
    turns: list[TurnResult]
    duration_s: float = 0.0
    error: str = ""
    opening: list[dict[str, Any]] = field(default_factory=list)


def _owners(logs: list[TurnLog]) -> dict[int, int]:
    owner: dict[int, int] = {}
    for log in logs:
        for e in log.events:
            if isinstance(e.get("turn"), int):
                owner.setdefault(e["turn"], log.index)
    return owner


def _reply_of(turns: list[int], events: list[dict[str, Any]]) -> tuple[str, bool]:
    """(the text of these replies, whether one of them was cut before its final text)."""
    parts, cut = [], False
    for t in turns:
        mine = [e for e in events if e.get("turn") == t and e["type"] == "agent_text"]
        final = next((e["text"] for e in mine if e.get("final")), None)
        if final is None:
            cut = cut or bool(mine)
            final = "".join(e["text"] for e in mine)
        if final.strip():
            parts.append(final.strip())
    return " ".join(parts), cut


def _tools_of(turns: list[int], events: list[dict[str, Any]]) -> list[ToolUse]:
    """Calls announced by these replies, and results they got (a consequential call announced
    in an earlier turn runs in the turn of the user's yes: it is counted there, by its id)."""
    announced = {e["id"]: e for e in events if e["type"] == "tool_call"}
    uses: dict[str, ToolUse] = {}
    for e in events:
        if e.get("turn") not in turns:
            continue
        if e["type"] == "tool_call":
            uses[e["id"]] = ToolUse(e["id"], e["name"], dict(e.get("arguments") or {}))
        elif e["type"] == "tool_result":
            call = announced.get(e["id"], {})
            use = uses.setdefault(e["id"], ToolUse(e["id"], call.get("name", "?"), dict(call.get("arguments") or {}),
                                                   announced=False))
            use.ok, use.result = bool(e.get("ok")), e.get("result")
    return list(uses.values())


def turn_facts(logs: list[TurnLog], i: int, opening: list[dict[str, Any]] | None = None,
               audio_transcript: str | None = None) -> TurnFacts:
    log = logs[i]
    owner = _owners(logs)
    events = [e for lg in logs for e in lg.events]
    mine = [t for t, owned_by in owner.items() if owned_by == i]
    reply, _ = _reply_of(mine, events)
    metrics = next((e for e in events if e["type"] == "turn_metrics" and e.get("turn") in mine), None)
    v2v = (metrics or {}).get("stages_ms", {}).get("voice_to_voice")
    states = [e for e in [*(opening or []), *events] if e["type"] == "state_changed" and e["at_s"] <= log.ended_s]
    previous = [t for t, owned_by in owner.items() if owned_by == i - 1]
    cut_before = log.turn.barge_in_after_ms is not None and _reply_of(previous, events)[1]
    return TurnFacts(
        kind=log.turn.kind, user_words=log.turn.words,
        transcript=" ".join(f.strip() for f in log.finals if f.strip()),
        reply=reply, tools=_tools_of(mine, events),
        state=states[-1]["state"] if states else None, slots=dict(states[-1].get("slots") or {}) if states else {},
        interrupted=any(e["type"] == "interrupted" for e in log.events) or cut_before,
        voice_to_voice_ms=v2v, audio_transcript=audio_transcript)


def audio_checkable(scenario: Scenario, logs: list[TurnLog], i: int) -> bool:
    """check_audio compares a reply heard to its end, alone in its turn's audio: not a reply cut by
    a barge-in, nor one whose turn cut the previous reply."""
    turns = scenario.turns
    barged = turns[i].barge_in_after_ms is not None or (
        i + 1 < len(turns) and turns[i + 1].barge_in_after_ms is not None)
    return scenario.check_audio and not barged and not logs[i].timed_out and bool(logs[i].audio)


def evaluate(scenario: Scenario, logs: list[TurnLog], *, opening: list[dict[str, Any]] | None = None,
             audio_transcripts: dict[int, str] | None = None, error: str = "",
             duration_s: float = 0.0) -> ScenarioResult:
    """Checks of every turn that ran; turns after a timeout or an error are `not_run`."""
    results = []
    for i, turn in enumerate(scenario.turns):
        if i >= len(logs):
            results.append(TurnResult(i, turn.line, turn.kind, _input(turn), TurnFacts(turn.kind, turn.words), [],
                                      "not_run"))
            continue
        log = logs[i]
        transcript = (audio_transcripts or {}).get(i)
        facts = turn_facts(logs, i, opening, transcript)
        checks = check_turn(facts, turn.expect, audio_checked=transcript is not None)
        if log.timed_out:
            checks.insert(0, Check("completed", False, f"timed out after {turn.timeout_s or scenario.timeout_s:g} s "
                                                       f"waiting for: {'; '.join(log.missing)}"))
        interrupted = next((e for e in log.events if e["type"] == "interrupted"), None)
        results.append(TurnResult(
            i, turn.line, turn.kind, _input(turn), facts, checks,
            "passed" if all(c.ok for c in checks) else "failed",
            started_s=log.started_s, ended_s=log.ended_s, first_audio_s=log.first_audio_s,
            heard_text=interrupted.get("heard_text") if interrupted else None, missing=list(log.missing),
            events=log.events))
    status = "passed" if all(t.status == "passed" for t in results) else "failed"
    return ScenarioResult(scenario, "error" if error else status, results, duration_s=duration_s, error=error,
                          opening=opening or [])


def _input(turn: Any) -> str:
    if turn.kind == "dtmf":
        return f"DTMF {turn.dtmf}"
    if turn.kind == "silence":
        return f"{turn.silence_ms:g} ms of silence"
    return turn.words or f"(audio {turn.audio})"
