"""From logged server events to turn results and reports (`voice eval`), without a server: which reply
belongs to which turn (barge-in, a yes that runs an earlier proposal), timeouts, when a turn is
over, and the JSON / HTML reports."""

from __future__ import annotations

import time
from pathlib import Path

from voice.eval.evaluate import evaluate, turn_facts
from voice.eval.html_report import render
from voice.eval.report import rescore, scenario_json, summarize, to_json
from voice.eval.runner import EvalRun
from voice.eval.scenario import parse_scenario
from voice.eval.session import SETTLE_S, ScenarioSession, TurnLog


def scenario(turns_yaml: str, category: str = "weather", name: str = "s"):
    return parse_scenario(f"name: {name}\nagent: assistant\ncategory: {category}\nturns:\n{turns_yaml}",
                          Path(f"{name}.yaml"))


def ev(at_s: float, type_: str, **fields) -> dict:
    return {"type": type_, "at_s": at_s, **fields}


def reply(turn: int, text: str, at_s: float) -> list[dict]:
    return [ev(at_s, "agent_text", turn=turn, text=text, final=False), ev(at_s + 0.1, "audio_start"),
            ev(at_s + 0.2, "agent_text", turn=turn, text=text, final=True), ev(at_s + 2, "audio_end")]


def log_of(s, i: int, events: list[dict], start: float, end: float, **kw) -> TurnLog:
    log = TurnLog(i, s.turns[i], started_s=start, ended_s=end, events=events, **kw)
    log.first_audio_s = next((e["at_s"] for e in events if e["type"] == "audio_start"), None)
    return log


WEATHER = """\
  - type: What's the weather in Paris tomorrow?
    expect:
      tools: [{name: get_weather, args: {city: Paris, day: tomorrow}}]
      reply: {number: 14}
"""


def test_a_tool_turn_gets_its_call_result_reply_state_and_latency():
    s = scenario(WEATHER)
    events = [ev(0.5, "tool_call", turn=1, id="c1", name="get_weather", arguments={"city": "Paris", "day": "tomorrow"}),
              ev(0.6, "tool_result", turn=1, id="c1", ok=True, result={"high_celsius": 14}),
              ev(0.9, "turn_metrics", turn=1, stages_ms={"voice_to_voice": 1234.5}),
              *reply(1, "Light rain tomorrow in Paris, 14 degrees.", 1.0)]
    opening = [ev(0.0, "state_changed", state="assistant/main", slots={})]
    result = evaluate(s, [log_of(s, 0, events, 0.0, 3.5)], opening=opening)
    [turn] = result.turns
    assert result.status == "passed", [(c.name, c.detail) for c in turn.checks]
    assert turn.facts.reply == "Light rain tomorrow in Paris, 14 degrees."
    assert turn.facts.voice_to_voice_ms == 1234.5 and turn.facts.state == "assistant/main"
    assert [(u.name, u.ok) for u in turn.facts.tools] == [("get_weather", True)]


def test_a_wrong_answer_fails_the_scenario_with_the_agent_quoted():
    s = scenario(WEATHER)
    events = [ev(0.5, "tool_call", turn=1, id="c1", name="get_weather", arguments={"city": "Paris", "day": "today"}),
              *reply(1, "It is sunny in Paris, 21 degrees.", 1.0)]
    result = evaluate(s, [log_of(s, 0, events, 0.0, 3.5)])
    assert result.status == "failed"
    assert [c.name for c in result.turns[0].failures] == ["tool_called", "reply_number"]
    assert "'It is sunny in Paris, 21 degrees.'" in result.turns[0].failures[1].detail


BARGE = """\
  - type: Tell me a long story.
  - type: Stop, what's the weather in Rome?
    barge_in_after_ms: 1000
    expect: {interrupted: true}
"""


def test_a_reply_cut_by_a_barge_in_stays_with_its_turn():
    s = scenario(BARGE)
    first = [ev(0.5, "agent_text", turn=1, text="Once upon a time ", final=False), ev(0.6, "audio_start")]
    second = [ev(1.7, "agent_text", turn=1, text="there was a dragon", final=False),
              ev(1.8, "interrupted", turn=1, played_ms=1000.0, heard_text="Once upon a"),
              *reply(2, "Sunny in Rome.", 2.5)]
    logs = [log_of(s, 0, first, 0.0, 1.6), log_of(s, 1, second, 1.6, 5.0)]
    assert turn_facts(logs, 0).reply == "Once upon a time there was a dragon"
    facts = turn_facts(logs, 1)
    assert facts.reply == "Sunny in Rome." and facts.interrupted
    result = evaluate(s, logs)
    assert result.turns[1].heard_text == "Once upon a" and result.turns[1].status == "passed"


def test_a_typed_barge_in_counts_as_interrupting_without_an_interrupted_event():
    s = scenario(BARGE)
    first = [ev(0.5, "agent_text", turn=1, text="Once upon a time", final=False), ev(0.6, "audio_start")]
    logs = [log_of(s, 0, first, 0.0, 1.6), log_of(s, 1, reply(2, "Sunny in Rome.", 2.5), 1.6, 5.0)]
    assert turn_facts(logs, 1).interrupted


YES = """\
  - type: Remind me to call my sister at 6 pm.
    expect: {tools: [{name: add_reminder, args: {time: "18:00"}}]}
  - type: Yes please.
    expect: {tools: [{name: add_reminder, args: {time: "18:00"}}]}
"""


def test_a_yes_runs_the_call_proposed_in_the_turn_before_and_may_then_claim_it():
    s = scenario(YES, "numbers_times")
    proposal = [ev(0.4, "tool_call", turn=1, id="c1", name="add_reminder",
                   arguments={"text": "call my sister", "time": "18:00"}),
                *reply(1, "Shall I remind you to call my sister at 6 pm?", 0.5)]
    done = [ev(3.1, "tool_result", turn=2, id="c1", ok=True, result={"saved": True}),
            *reply(2, "Okay, I've set a reminder to call your sister at 6 pm.", 3.2)]
    result = evaluate(s, [log_of(s, 0, proposal, 0.0, 3.0), log_of(s, 1, done, 3.0, 6.0)])
    assert result.status == "passed", [(c.name, c.detail) for t in result.turns for c in t.failures]
    [use] = result.turns[1].facts.tools
    assert (use.name, use.ok, use.announced) == ("add_reminder", True, False)


def test_a_timeout_fails_the_turn_with_what_was_missing_and_skips_the_rest():
    s = scenario(YES, "numbers_times")
    stuck = log_of(s, 0, [], 0.0, 60.0, missing=["an agent reply (no agent_text, tool or metrics event)"])
    result = evaluate(s, [stuck])
    first, second = result.turns
    assert first.failures[0].name == "completed"
    assert "timed out after 60 s waiting for: an agent reply" in first.failures[0].detail
    assert second.status == "not_run" and result.status == "failed"


def test_a_session_error_makes_an_error_result():
    s = scenario(WEATHER)
    result = evaluate(s, [], error="ConnectionRefusedError: [Errno 111]")
    assert result.status == "error" and result.turns[0].status == "not_run"


# ---------------------------------------------------------------- when a turn is over


def session_for(turns_yaml: str) -> ScenarioSession:
    return ScenarioSession(scenario(turns_yaml), "ws://127.0.0.1:9/ws", {})


def quiet_log(s: ScenarioSession, i: int = 0) -> TurnLog:
    return TurnLog(i, s.scenario.turns[i], last_activity=time.monotonic() - SETTLE_S - 0.1)


def test_a_typed_turn_is_over_when_the_newest_reply_is_final_its_audio_ended_and_all_is_quiet():
    s = session_for(WEATHER)
    log = quiet_log(s)
    assert not s._over(log)  # nothing yet
    s._on_event(log, {"type": "agent_text", "turn": 1, "text": "Light", "final": False})
    log.audio_open = True
    s._on_event(log, {"type": "agent_text", "turn": 1, "text": "Light rain.", "final": True})
    log.last_activity = time.monotonic() - SETTLE_S - 0.1
    assert not s._over(log)  # audio still playing
    log.audio_open = False
    assert s._over(log)
    log.last_activity = time.monotonic()
    assert not s._over(log)  # a second reply may follow: wait for quiet


def test_a_newer_reply_ends_the_older_one_and_a_spoken_turn_waits_for_its_final():
    s = session_for("  - say: Hello there.\n")
    log = quiet_log(s)
    s._on_event(log, {"type": "speech_started", "utterance": 1})
    s._on_event(log, {"type": "agent_text", "turn": 3, "text": "Hi", "final": False})
    s._on_event(log, {"type": "agent_text", "turn": 4, "text": "Hello!", "final": True})
    log.last_activity = time.monotonic() - SETTLE_S - 0.1
    assert log.done_turns == {3, 4}
    assert not s._over(log)  # the utterance has no final yet
    s._on_event(log, {"type": "transcript_final", "utterance": 1, "text": "Hello there."})
    log.last_activity = time.monotonic() - SETTLE_S - 0.1
    assert s._over(log)
    assert s._missing(quiet_log(s), barge_next=True) == [
        "speech_started / transcript_final (the server heard no speech)",
        "an agent reply (no agent_text, tool or metrics event)",
        "the reply's first audio (the next turn barges in on it)"]


# ---------------------------------------------------------------- reports


def run_of(results) -> EvalRun:
    return EvalRun(results, {"llm": "qwen2.5-coder-0.5b", "asr": "whisper-tiny.en"}, "ws://x/ws",
                   "2026-12-06T00:00:00", 12.0)


def test_the_json_report_has_pass_rates_per_category_and_per_turn_results():
    ok_s, bad_s = scenario(WEATHER, "weather", "good"), scenario(WEATHER, "arithmetic", "bad")
    good = [ev(0.5, "tool_call", turn=1, id="c1", name="get_weather", arguments={"city": "Paris", "day": "tomorrow"}),
            *reply(1, "Rain, 14 degrees.", 1.0)]
    results = [evaluate(ok_s, [log_of(ok_s, 0, good, 0, 3)]),
               evaluate(bad_s, [log_of(bad_s, 0, reply(1, "The tool call failed <b>", 1.0), 0, 3)])]
    summary, cats = summarize([scenario_json(r) for r in results])
    assert (summary["scenarios"], summary["passed"], summary["pass_rate"]) == (2, 1, 0.5)
    assert cats == {"arithmetic": {"scenarios": 1, "passed": 0, "pass_rate": 0.0},
                    "weather": {"scenarios": 1, "passed": 1, "pass_rate": 1.0}}
    report = to_json(run_of(results))
    turn = report["scenarios"][1]["turns"][0]
    assert turn["reply"] == "The tool call failed <b>" and turn["status"] == "failed"
    assert {c["name"] for c in turn["checks"] if not c["ok"]} == {"tool_called", "reply_number", "no_internal_text"}
    assert report["models"]["llm"] == "qwen2.5-coder-0.5b"
    assert all(not (e["type"] == "agent_text" and not e["final"]) for e in turn["events"])


def test_the_html_report_is_self_contained_escapes_replies_and_charts_latency():
    s = scenario(WEATHER)
    events = [ev(0.9, "turn_metrics", turn=1, stages_ms={"voice_to_voice": 900.0}),
              *reply(1, "The tool call failed <script>alert(1)</script>", 1.0)]
    page = render(to_json(run_of([evaluate(s, [log_of(s, 0, events, 0, 3)])])))
    assert "<svg" in page and "900 ms" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace("ws://x/ws", "") and "https://" not in page
    assert 'class="check-fail"' in page


def test_a_stored_report_is_rescored_with_new_expectations_without_replaying():
    s = scenario(WEATHER)
    events = [ev(0.5, "tool_call", turn=1, id="c1", name="get_weather", arguments={"city": "Paris", "day": "tomorrow"}),
              *reply(1, "Light rain, 14 degrees.", 1.0)]
    stored = to_json(run_of([evaluate(s, [log_of(s, 0, events, 0, 3)])]))
    assert stored["summary"]["passed"] == 1
    stricter = scenario(WEATHER.replace("reply: {number: 14}", "reply: {number: 15}"))
    again = rescore(stored, {"s": stricter})
    assert again["summary"]["passed"] == 0 and again["scenarios"][0]["status"] == "failed"
    assert [c["name"] for c in again["scenarios"][0]["turns"][0]["checks"] if not c["ok"]] == ["reply_number"]
    assert rescore(stored, {})["summary"]["passed"] == 1  # a scenario no longer shipped keeps its result
