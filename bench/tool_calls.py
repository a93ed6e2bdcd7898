"""Tool-call accuracy, false calls and flow completion of the example agents with the real Qwen 0.5B.

Scenarios: 50 user turns in 26 conversations across both agents (text turns into the Agent, no
audio). Per turn we know which tool calls should happen (or none). Reported:

* tool-call accuracy: turns that should call a tool and made the right call (right tool, arguments
  valid and equal to the expected values);
* false calls: turns that should not call a tool and did;
* flow completion: booking conversations that end with the right booking stored.

Baselines, same run, same model and turns:
* `naive`: the same tools with no dialogue flow and no tool routing (every tool offered every turn,
  whole history shown): what a plain tool-calling loop around this model does;
* `json_only`: our generations re-parsed with a strict parser (the whole reply must be one JSON
  object), on the turns where the model itself was asked with tools; `parser` is our lenient
  parser scored on exactly those generations.
Ratio = ours / baseline.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/tool_calls.py [--threads 1] [--model NAME] [--no-baselines]
(`--model qwen2.5-coder-1.5b` for the model choice; results go to tool_calls_<model>.json then.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import print_table, summary, write_results  # noqa: E402

from voice.agents import assistant, booking, build_agent  # noqa: E402
from voice.agents.settings import AgentsSettings  # noqa: E402
from voice.agents.store import BookingStore  # noqa: E402
from voice.llm.agent import Agent, AgentOptions  # noqa: E402
from voice.llm.base import GenerationOptions  # noqa: E402
from voice.llm.flows import load_flow  # noqa: E402
from voice.llm.toolcalls import parse_reply  # noqa: E402
from voice.llm.tools import Toolbox  # noqa: E402

Call = tuple[str, dict[str, Any]]
W = "get_weather"
NONE: list[Call] = []


@dataclass
class Scenario:
    agent: str
    turns: list[tuple[str, list[Call]]]
    booking: tuple[str, int, str] | None = None  # the row the conversation must end with


SCENARIOS = [
    *(Scenario("assistant", [(q, calls)]) for q, calls in [
        ("What's the weather in Paris tomorrow?", [(W, {"city": "paris", "day": "tomorrow"})]),
        ("Is it going to rain in London today?", [(W, {"city": "london", "day": "today"})]),
        ("Will I need an umbrella in Berlin today?", [(W, {"city": "berlin"})]),
        ("How hot will it be in Madrid tomorrow?", [(W, {"city": "madrid", "day": "tomorrow"})]),
        ("What's the temperature in Tokyo right now?", [(W, {"city": "tokyo"})]),
        ("Is it sunny in Rome today?", [(W, {"city": "rome"})]),
        ("Remind me to call my sister at six pm.", [("add_reminder", {"time": "18:00"})]),
        ("Please remind me to water the plants at 8 am.", [("add_reminder", {"time": "08:00"})]),
        ("Set a reminder to buy milk at 5 pm.", [("add_reminder", {"time": "17:00"})]),
        ("What reminders do I have?", [("list_reminders", {})]),
        ("Do I have any reminders?", [("list_reminders", {})]),
        ("What is the capital of France?", NONE),
        ("How many days are there in a week?", NONE),
        ("Tell me a joke about cats.", NONE),
        ("What is two plus three?", NONE),
        ("How do I boil an egg?", NONE),
        ("Who wrote Romeo and Juliet?", NONE),
        ("I'm feeling cold, any tips to warm up?", NONE),
        ("Thank you, that was helpful.", NONE),
    ]),
    Scenario("assistant", [("What's the weather in Paris tomorrow?", [(W, {"city": "paris", "day": "tomorrow"})]),
                           ("And what about Berlin?", [(W, {"city": "berlin"})])]),
    Scenario("assistant", [("Remind me to call mom at 7 pm.", [("add_reminder", {"time": "19:00"})]),
                           ("Yes.", NONE),
                           ("What reminders do I have?", [("list_reminders", {})])]),
    Scenario("booking", [("Hi, I'd like to book a table.", NONE), ("Italian, please.", NONE),
                         ("We are four people.", NONE),
                         ("At seven thirty in the evening.", [("book_table", {"cuisine": "italian", "party_size": 4,
                                                                               "time": "19:30"})]),
                         ("Yes.", NONE)], booking=("italian", 4, "19:30")),
    Scenario("booking", [("Can I get a table for two at 8 pm? We'd like Japanese.",
                          [("book_table", {"cuisine": "japanese", "party_size": 2, "time": "20:00"})]),
                         ("Yes, please.", NONE)], booking=("japanese", 2, "20:00")),
    Scenario("booking", [("I want to book a table.", NONE), ("Indian food.", NONE), ("Six people.", NONE),
                         ("Seven pm.", [("book_table", {"cuisine": "indian", "party_size": 6, "time": "19:00"})]),
                         ("No.", NONE),
                         ("I want to change the number of people.", [("go_to_step", {"step": "party_size"})]),
                         ("Five people.", [("book_table", {"cuisine": "indian", "party_size": 5, "time": "19:00"})]),
                         ("Yes.", NONE)], booking=("indian", 5, "19:00")),
    Scenario("booking", [("Mexican please.", NONE), ("Do you have vegetarian dishes?", NONE), ("Three of us.", NONE),
                         ("Nine pm.", [("book_table", {"cuisine": "mexican", "party_size": 3, "time": "21:00"})]),
                         ("No, make it eight thirty pm.",
                          [("book_table", {"cuisine": "mexican", "party_size": 3, "time": "20:30"})]),
                         ("Yes.", NONE)], booking=("mexican", 3, "20:30")),
    Scenario("booking", [("Italian for two people at seven pm.",
                          [("book_table", {"cuisine": "italian", "party_size": 2, "time": "19:00"})]),
                         ("No.", NONE), ("The food.", [("go_to_step", {"step": "cuisine"})]),
                         ("Japanese.", [("book_table", {"cuisine": "japanese", "party_size": 2, "time": "19:00"})]),
                         ("Yes.", NONE)], booking=("japanese", 2, "19:00")),
]


class Spy:
    """The engine, recording every request's raw output and whether tools were offered."""

    def __init__(self, llm: Any):
        self.llm, self.name = llm, llm.name
        self.rounds: list[tuple[bool, str]] = []

    async def stream_chat(self, messages: list[dict], options: GenerationOptions | None = None):
        out = ""
        async for delta in self.llm.stream_chat(messages, options):
            out += delta
            yield delta
        self.rounds.append((bool(options and options.tools), out))

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def close(self) -> None:
        pass


@dataclass
class Tally:
    expected: int = 0
    correct: int = 0
    no_call_turns: int = 0
    false_calls: int = 0
    conversations: int = 0
    completed: int = 0
    first_text_ms: list[float] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)

    def metrics(self) -> dict:
        return {"tool_call_accuracy": self.correct / max(1, self.expected), "expected_calls": self.expected,
                "false_call_rate": self.false_calls / max(1, self.no_call_turns), "no_call_turns": self.no_call_turns,
                "flow_completion": self.completed / max(1, self.conversations), "conversations": self.conversations,
                "first_text_ms": summary(self.first_text_ms)}


def matches(expected: Call, name: str, args: dict[str, Any]) -> bool:
    want_name, want = expected
    norm = {k: str(v).lower() for k, v in args.items()}
    return name == want_name and all(norm.get(k) == str(v).lower() for k, v in want.items())


def json_only(raw: str) -> Call | None:
    """The strict baseline parser: the whole reply is one {"name", "arguments"} object, or no call."""
    try:
        obj = json.loads(raw.strip())
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("name"), str) and isinstance(obj.get("arguments", {}), dict):
        return obj["name"], obj.get("arguments", {})
    return None


async def make_agent(kind: str, scenario: Scenario, spy: Spy, data: Path, generation: GenerationOptions) -> Agent:
    settings = AgentsSettings(data_dir=data)
    if kind == "ours":
        return await build_agent(scenario.agent, spy, settings, generation, session_id="bench",
                                 system_prompt="You are a helpful voice assistant.")
    # no routing, whole history, no grammar, no call filler: a plain tool-calling loop
    naive = AgentOptions(route_tools=False, tool_history=None, constrain_calls=False, call_filler="")
    if scenario.agent == "booking":
        spec = load_flow(booking.FLOW)
        tools = booking.booking_tools(BookingStore(data / "bookings.sqlite3"), "bench")
        prompt = (f"{spec.identity}\nAsk for the cuisine, the number of people and the time, one at a time. "
                  "When you know all three, call book_table.")
    else:
        spec = load_flow(assistant.FLOW)
        from voice.agents.store import ReminderStore

        tools = [assistant.get_weather, *assistant.reminder_tools(ReminderStore(data / "reminders.sqlite3"), "u")]
        prompt = f"{spec.tool_identity}\nRules:\n- {spec.tool_rules[0]}"  # our tool-round wording
    return Agent(spy, system_prompt=prompt, generation=generation, toolbox=Toolbox(tools), options=naive)


def lenient(raw: str) -> Call | None:
    calls = parse_reply(raw).calls
    return calls[0] if calls else None


async def run(kind: str, spy: Spy, generation: GenerationOptions, tally: Tally,
              parsers: dict[str, Tally] | None = None) -> None:
    for n, scenario in enumerate(SCENARIOS):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            agent = await make_agent(kind, scenario, spy, data, generation)
            for turn, (text, expected) in enumerate(scenario.turns, 1):
                spy.rounds.clear()
                started, first = time.monotonic(), None
                agent.hear(text)
                items = []
                async for item in agent.reply(turn):
                    if isinstance(item, str) and first is None:
                        first = (time.monotonic() - started) * 1000
                    items.append(item)
                spoken = "".join(i for i in items if isinstance(i, str))
                agent.finished(spoken)
                calls = [(e.name, e.arguments) for e in items if getattr(e, "type", "") == "tool_call"]
                invalid = {e.id for e in items if getattr(e, "type", "") == "tool_result" and not e.ok
                           and e.result.get("error") in ("invalid_arguments", "unknown_tool")}
                valid = [c for c, e in zip(calls, [i for i in items if getattr(i, "type", "") == "tool_call"],
                                           strict=True) if e.id not in invalid]
                ok = all(any(matches(x, *c) for c in valid) for x in expected)
                if expected:
                    tally.expected += 1
                    tally.correct += ok
                else:
                    tally.no_call_turns += 1
                    tally.false_calls += bool(calls)
                if first is not None:
                    tally.first_text_ms.append(first)
                tally.turns.append({"scenario": n, "text": text, "expected": expected, "calls": calls, "ok": ok,
                                    "spoken": spoken})
                model_rounds = [raw for offered, raw in spy.rounds if offered]
                for name, parser in (parsers or {}).items():
                    if not model_rounds:
                        break
                    parsed = {"json_only": json_only, "parser": lenient}[name](model_rounds[0])
                    if expected:
                        parser.expected += 1
                        parser.correct += bool(parsed and any(matches(x, *parsed) for x in expected))
                    else:
                        parser.no_call_turns += 1
                        parser.false_calls += parsed is not None
            if scenario.booking:
                stored = BookingStore(data / "bookings.sqlite3").all()
                rows = [(r["cuisine"], r["party_size"], r["time"]) for r in stored]
                tally.conversations += 1
                tally.completed += rows == [scenario.booking]
            await agent.aclose()


async def main(threads: int, model: str, baselines: bool) -> None:
    from voice.llm.llama import LlamaCppEngine
    from voice.models import model_path

    engine = LlamaCppEngine(model_path(model), n_ctx=4096, n_threads=threads)
    spy = Spy(engine)
    generation = GenerationOptions(max_tokens=120, temperature=0.0)
    results: dict[str, Tally] = {"ours": Tally(), "naive": Tally(), "parser": Tally(), "json_only": Tally()}
    # the parser comparison is scored on our own generations, turn by turn
    await run("ours", spy, generation, results["ours"], {k: results[k] for k in ("parser", "json_only")})
    if baselines:
        await run("naive", spy, generation, results["naive"], None)
    engine.close()
    metrics = {k: v.metrics() for k, v in results.items()}
    ours, naive = metrics["ours"], metrics["naive"]
    ratios = {
        "accuracy_vs_naive": ours["tool_call_accuracy"] / max(1e-9, naive["tool_call_accuracy"]),
        "false_calls_vs_naive": ours["false_call_rate"] / max(1e-9, naive["false_call_rate"]),
        "completion_vs_naive": ours["flow_completion"] / max(1e-9, naive["flow_completion"]),
        "parser_accuracy_vs_json_only": metrics["parser"]["tool_call_accuracy"]
        / max(1e-9, metrics["json_only"]["tool_call_accuracy"]),
    }
    print(f"\n{'':12} {'accuracy':>10} {'false calls':>12} {'completion':>11}")
    for name, m in metrics.items():
        print(f"{name:12} {m['tool_call_accuracy']:>10.2f} {m['false_call_rate']:>12.2f} {m['flow_completion']:>11.2f}"
              f"   (calls expected {m['expected_calls']}, no-call turns {m['no_call_turns']})")
    print_table("time from the user's turn to the first spoken text", [
        ("ours", ours["first_text_ms"]), ("naive", naive["first_text_ms"])])
    print("\nratios:", json.dumps({k: round(v, 2) for k, v in ratios.items()}))
    write_results("tool_calls" if model == "qwen2.5-coder-0.5b" else f"tool_calls_{model}", {
        "model": f"{model} Q4_K_M, llama.cpp CPU, temperature 0", "threads": threads,
        "turns": sum(len(s.turns) for s in SCENARIOS), "conversations": len(SCENARIOS),
        "metrics": metrics, "ratios": ratios,
        "turn_log": {k: results[k].turns for k in ("ours", "naive")},
    })


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="registry name of the GGUF")
    parser.add_argument("--no-baselines", action="store_true", help="skip the naive loop (half the time)")
    args = parser.parse_args()
    asyncio.run(main(args.threads, args.model, not args.no_baselines))
