"""First-audio latency through each door of one server, and Twilio before/after the loopback went.

Part A (one server, this tree): the same spoken questions through /ws (our protocol, Opus 16 kHz
up / 48 kHz down), /v1/realtime (OpenAI Realtime API, PCM16 24 kHz both ways) and /twilio (Media
Streams, μ-law 8 kHz both ways), one caller at a time, a fresh call per question and door. The
door order is reversed every question (ws, rt, twilio / twilio, rt, ws ...), so every pair of
doors takes turns going first and drift hits both alike. Realtime runs twice: as an SDK client
gets it (`realtime`: the API's default turn detection, server_vad = 500 ms of silence) and with
`semantic_vad` eagerness auto (`realtime_semantic`: our end-of-turn detector, what /ws and
/twilio use), so a transport difference is not mistaken for a turn-policy one.

Part B: Twilio before (a checkout of `--before`, where /twilio bridged each stream through a
loopback WebSocket to the same server's /ws) against after (this tree: the door drives the turn
controller in process). Both servers are up at once on their own ports; the questions alternate
between them (AB, BA, ...), one call at a time.

Metric (client clock, time.monotonic): the last speech sample sent (within 35 dB of the loudest
20 ms frame) -> the first reply audio received. The callers are voice/loadtest's (real-time
20 ms frames, silence streamed until the reply, the reply listened to until it has played).
The codecs differ per door (above), so ASR hears slightly different audio and the LLM may answer
differently: each call's heard transcript (where the door sends it) and reply are kept.

Usage: flock /tmp/heavy.lock .venv/bin/python bench/realtime_latency.py [--part a|b|all]
       [--questions 12] [--before a2566dc]
Writes bench/results/realtime_latency.json (both parts; a part not run is kept from the last file;
part B against another `--before` than the default is kept apart, as part_b_<commit>).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from common import RESULTS, print_table, summary, write_results  # noqa: E402
from voice_to_voice import start_server_in  # noqa: E402

from voice.loadtest.caller import Caller, Plan, Results  # noqa: E402
from voice.loadtest.doors import Door, Line, RealtimeDoor, RealtimeLine, TwilioDoor, WsDoor  # noqa: E402
from voice.loadtest.speech import QUESTIONS, Question, questions  # noqa: E402

NAME = "realtime_latency"
DEFAULT_BEFORE = "a2566dc"  # /twilio bridged through a loopback to /ws up to 478e409 (4bdc164 took it out)
SERVER_ENV = {"VOICE_LLM__TEMPERATURE": "0"}  # the same question gets the same answer on every door
PLAN = Plan(turns=1, pause_s=0.2, lost_after_s=15.0, reply_max_s=30.0)
SETTLE_S = 1.0  # between calls: the last call's teardown is not the next one's load
SEMANTIC = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
    "turn_detection": {"type": "semantic_vad", "eagerness": "auto"},
    "transcription": {"model": "whisper-1"}}}}}
SAID = re.compile(r"""stream=(?P<sid>MZ\d+) event=(?P<event>transcript_final|agent_text) text=(['"])(?P<text>.*)\3$""",
                  re.MULTILINE)
LOGGED_DELTAS = ("delta",)  # realtime events whose payload is not kept in the event log


# ---------------------------------------------------------------------------- doors that keep a log


class RawLog:
    """A realtime WebSocket that notes every server event (type, ms since the call began)."""

    def __init__(self, ws: Any, log: list):
        self._ws, self.log, self._t0 = ws, log, time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    async def __aiter__(self):
        async for raw in self._ws:
            event = json.loads(raw)
            kept = {k: v for k, v in event.items() if k not in LOGGED_DELTAS and k != "type"}
            self.log.append([round((time.monotonic() - self._t0) * 1000), event.get("type"),
                             json.dumps(kept)[:300]])
            yield raw


class LoggedLine(Line):
    """Any door's line, noting what the caller heard (kind, ms since the call began)."""

    def __init__(self, line: Line, log: list):
        super().__init__()
        self._line, self.log, self._t0 = line, log, time.monotonic()
        self.session_id = line.session_id

    @property
    def played_until(self) -> float:  # type: ignore[override]
        return self._line.played_until

    @played_until.setter
    def played_until(self, value: float) -> None:
        pass  # the wrapped line keeps the playback clock

    async def send(self, frame: Any) -> None:
        await self._line.send(frame)

    async def events(self):
        async for heard in self._line.events():
            if heard.kind != "audio" or not any(e[1] == "audio" for e in self.log):
                self.log.append([round((time.monotonic() - self._t0) * 1000), heard.kind, str(heard.data)[:200]])
            yield heard

    async def hang_up(self) -> None:
        await self._line.hang_up()


def logged(door_cls: type[Door], label: str, session_update: dict | None = None) -> type[Door]:
    """`door_cls` whose calls keep an event log in `door.logs[-1]` (and, for realtime, send
    `session_update` first)."""

    class Logged(door_cls):  # type: ignore[valid-type, misc]
        name = label

        def __init__(self, url: str, token: str | None):
            super().__init__(url, token)
            self.logs: list[list] = []
            self.session_ids: list[str] = []  # Twilio: the stream SID, how the server's log names the call

        async def call(self) -> Line:
            log: list = []
            self.logs.append(log)
            line = await super().call()
            self.session_ids.append(line.session_id)
            if isinstance(line, RealtimeLine):
                line.ws = RawLog(line.ws, log)
                if session_update:
                    await line.ws.send(json.dumps(session_update))
                return line
            return LoggedLine(line, log)

    return Logged


DOORS_A: dict[str, type[Door]] = {
    "ws": logged(WsDoor, "ws"), "realtime": logged(RealtimeDoor, "realtime"),
    "realtime_semantic": logged(RealtimeDoor, "realtime_semantic", SEMANTIC), "twilio": logged(TwilioDoor, "twilio"),
}


# ---------------------------------------------------------------------------- one call


async def one_call(door: Any, question: Question, index: int) -> dict:
    """One fresh call that asks `question` once; its first-audio latency and what was said."""
    results = Results()
    await Caller(index, door, [question], PLAN, results).run(None)
    turn = results.turns[0] if results.turns else None
    log = door.logs[-1]
    record = {"door": door.name, "question": question.text, "session_id": door.session_ids[-1],
              "v2v_ms": round(turn.v2v_ms, 1) if turn and turn.v2v_ms is not None else None,
              "heard": turn.heard if turn else None, "reply": turn.reply if turn else None,
              "stages_ms": turn.stages_ms if turn else None,
              "errors": dict(results.errors), "refused": results.refused}
    if record["v2v_ms"] is None or results.errors or results.refused:
        record["event_log"] = log  # what the caller saw of a failed call
    await asyncio.sleep(SETTLE_S)
    return record


def spoken_for(doors: list[Door], n: int) -> dict[int, list[Question]]:
    """The first `n` questions at each door's rate, encoded before any clock starts."""
    texts = tuple(QUESTIONS[i % len(QUESTIONS)] for i in range(n))
    by_rate = {door.rate_hz: questions(texts, rate_hz=door.rate_hz) for door in doors}
    for door in doors:
        for q in by_rate[door.rate_hz]:
            door.frames(q)
    return by_rate


async def alternate(doors: list[Door], n: int) -> list[dict]:
    """Question i through every door, in the doors' order on even i and reversed on odd i."""
    by_rate = spoken_for(doors, n)
    records = []
    for i in range(n):
        order = doors if i % 2 == 0 else doors[::-1]
        for position, door in enumerate(order):
            record = await one_call(door, by_rate[door.rate_hz][i], i)
            record.update(index=i, position=position)
            records.append(record)
            v2v = record["v2v_ms"]
            print(f"q{i + 1}/{n} {door.name:18} {'FAILED' if v2v is None else f'{v2v:7.0f} ms'}  "
                  f"{(record['reply'] or '')[:60]!r}", flush=True)
    return records


def fill_from_log(records: list[dict], server_log: str) -> None:
    """Twilio has no channel for text: what the server heard and said, from its log, by stream SID."""
    said: dict[tuple[str, str], str] = {}
    for m in SAID.finditer(server_log):
        with contextlib.suppress(ValueError, SyntaxError):  # the log writes the text as repr() does
            said.setdefault((m["sid"], m["event"]), ast.literal_eval(m[3] + m["text"] + m[3]))
    for r in records:
        if r["heard"] is None and r["reply"] is None and r["session_id"]:
            r["heard"] = said.get((r["session_id"], "transcript_final"))
            r["reply"] = said.get((r["session_id"], "agent_text"))


# ---------------------------------------------------------------------------- the report


def by_door(records: list[dict]) -> dict[str, dict]:
    names = list(dict.fromkeys(r["door"] for r in records))
    return {name: summary([r["v2v_ms"] for r in records if r["door"] == name and r["v2v_ms"] is not None])
            for name in names}


def ratios(stats: dict[str, dict], base: str) -> dict[str, dict]:
    return {f"{name}/{base}": {q: round(s[q] / stats[base][q], 3) for q in ("p50", "p95")}
            for name, s in stats.items() if name != base}


def paired(records: list[dict], door: str, base: str) -> dict:
    """Per question: door - base (ms), where both answered; its median says what drift cannot."""
    got = {(r["index"], r["door"]): r["v2v_ms"] for r in records if r["v2v_ms"] is not None}
    diffs = [got[(i, door)] - got[(i, base)] for i in sorted({r["index"] for r in records})
             if (i, door) in got and (i, base) in got]
    return summary(diffs)


def report(title: str, records: list[dict], base: str) -> dict:
    stats = by_door(records)
    print_table(f"{title}\nlast speech sample sent -> first reply audio received", list(stats.items()))
    rat = ratios(stats, base)
    for name, r in rat.items():
        print(f"ratio {name}: p50 {r['p50']:.2f}  p95 {r['p95']:.2f}")
    diffs = {f"{name}-{base}": paired(records, name, base) for name in stats if name != base}
    for name, d in diffs.items():
        print(f"paired difference {name}: median {d['p50']:+.0f} ms over {d['n']} questions")
    failed = [r for r in records if r["v2v_ms"] is None]
    if failed:
        print(f"{len(failed)} call(s) without reply audio: see event_log in the JSON")
    return {"first_audio_ms": stats, "ratios": rat, "paired_difference_ms": diffs, "failed_calls": len(failed),
            "calls": records}


# ---------------------------------------------------------------------------- the parts


def part_a(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="h11-data-") as data:
        server = start_server_in(None, "cpu", {**SERVER_ENV, "VOICE_DATA_DIR": data})
        try:
            doors = [cls(server.url, None) for cls in DOORS_A.values()]
            records = asyncio.run(alternate(doors, n))
            fill_from_log(records, server.log())
        finally:
            server.stop()
    out = report(f"Part A: one server, {n} questions per door, one call at a time", records, "ws")
    out["codecs"] = {"ws": "Opus 16 kHz up, Opus 48 kHz down", "realtime": "PCM16 24 kHz both ways (base64 JSON)",
                     "realtime_semantic": "as realtime; session.update turn_detection semantic_vad auto",
                     "twilio": "mu-law 8 kHz both ways (base64 JSON, 20 ms media)"}
    out["turn_detection"] = {"ws": "server default (smart turn)", "twilio": "server default (smart turn)",
                             "realtime": "API default server_vad, silence_duration_ms 500",
                             "realtime_semantic": "semantic_vad eagerness auto (our end-of-turn detector)"}
    return out


def checkout(commit: str) -> Path:
    """`commit` extracted under /tmp (once), for a server run from it with this .venv."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True,
                         text=True).stdout.strip()
    tree = Path(f"/tmp/h11_before_{sha[:10]}")
    if not (tree / "voice").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def part_b(n: int, before: str) -> dict:
    tree = checkout(before)
    with tempfile.TemporaryDirectory(prefix="h11-before-") as d1, \
            tempfile.TemporaryDirectory(prefix="h11-after-") as d2:
        old = start_server_in(tree, "cpu", {**SERVER_ENV, "VOICE_DATA_DIR": d1,
                                          "PYTHONPATH": str(tree)})  # its own voice package first
        new = None
        try:
            new = start_server_in(None, "cpu", {**SERVER_ENV, "VOICE_DATA_DIR": d2})
            doors = [logged(TwilioDoor, "twilio_after")(new.url, None),
                     logged(TwilioDoor, "twilio_before")(old.url, None)]
            records = asyncio.run(alternate(doors, n))
            fill_from_log(records, old.log() + new.log())
        finally:
            old.stop()
            if new:
                new.stop()
    out = report(f"Part B: /twilio after (in process) vs before ({before}, loopback to /ws), {n} questions",
                 records, "twilio_before")
    out["before"] = {"commit": before, "tree": str(tree)}
    out["after"] = {"commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                             text=True).stdout.strip(), "tree": "working tree"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("a", "b", "all"), default="all")
    ap.add_argument("--questions", type=int, default=12, help=f"questions per door (at most {len(QUESTIONS)})")
    ap.add_argument("--before", default=DEFAULT_BEFORE,
                    help="part B's before: a commit whose /twilio used the loopback")
    args = ap.parse_args()
    path = RESULTS / f"{NAME}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    started = time.monotonic()
    parts = {k: v for k, v in previous.items() if k.startswith("part_")}
    if args.part in ("a", "all"):
        parts["part_a"] = {**part_a(args.questions), "runtime_s": round(time.monotonic() - started, 1)}
    if args.part in ("b", "all"):
        t0 = time.monotonic()
        key = "part_b" if args.before == DEFAULT_BEFORE else f"part_b_{args.before}"
        parts[key] = {**part_b(args.questions, args.before), "runtime_s": round(time.monotonic() - t0, 1)}
    write_results(NAME, {
        "settings": {"questions_per_door": args.questions, "part": args.part, "profile": "cpu",
                     "server_env": SERVER_ENV, "plan": vars(PLAN), "settle_s": SETTLE_S, "one_caller_at_a_time": True,
                     "metric": "client clock: last speech sample sent -> first reply audio received (ms)"},
        "runtime_s": round(time.monotonic() - started, 1), **parts})


if __name__ == "__main__":
    main()
