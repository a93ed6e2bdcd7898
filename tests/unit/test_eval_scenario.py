"""Scenario files for `voice eval`: the schema, and errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice.eval.scenario import (
    ScenarioError,
    load_scenarios,
    parse_scenario,
    select,
    shipped_scenarios_dir,
)

GOOD = """\
name: reminder
agent: assistant
category: numbers_times
tags: [ci]
turns:
  - type: Remind me to call my sister at 6 pm.
    expect:
      tools: [{name: add_reminder, args: {time: "18:00"}}]
      reply: {must: ['\\?'], no_words: [morning]}
  - say: Yes please.
    expect: {max_wer: 0.3}
  - dtmf: "12#"
  - silence_ms: 1500
  - say: Stop.
    barge_in_after_ms: 800
    expect: {interrupted: true}
"""


def problems(text: str, name: str = "s.yaml") -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, Path(name))
    return err.value.problems


def test_a_good_scenario_loads_with_its_turn_kinds_and_lines():
    s = parse_scenario(GOOD, Path("reminder.yaml"))
    assert [t.kind for t in s.turns] == ["type", "say", "dtmf", "silence", "say"]
    assert [t.line for t in s.turns] == [6, 10, 12, 13, 14]
    assert s.turns[0].expect.tools[0].args == {"time": "18:00"}
    assert s.spoken and s.tags == ["ci"]


def test_the_name_defaults_to_the_file_name():
    s = parse_scenario(GOOD.replace("name: reminder\n", ""), Path("dir/evening_call.yaml"))
    assert s.name == "evening_call"


def test_an_unknown_field_is_named_with_its_line():
    text = GOOD.replace("      tools:", "      toolz: 1\n      tools:")
    assert problems(text) == ["s.yaml:8: turns[0].expect.toolz: unknown field (docs/eval.md lists the fields)"]


def test_a_missing_required_field_is_named_at_its_parent():
    text = GOOD.replace("{name: add_reminder, args:", "{args:")
    assert problems(text) == ["s.yaml:8: turns[0].expect.tools[0].name: required field is missing"]


def test_a_bad_regex_names_the_item_and_the_line():
    text = GOOD.replace("must: ['\\?']", "must: ['(unclosed']")
    [problem] = problems(text)
    assert problem.startswith("s.yaml:9: turns[0].expect.reply.must: item 0: bad regex '(unclosed'")


def test_a_turn_with_two_inputs_is_refused_at_the_turn_line():
    text = GOOD.replace("  - dtmf: \"12#\"\n", "  - dtmf: \"12#\"\n    type: hello\n")
    assert problems(text) == ["s.yaml:12: turns[2]: a turn needs exactly one of say, audio, type, dtmf, "
                              "silence_ms (got type, dtmf)"]


def test_bad_dtmf_digits_are_refused():
    assert problems(GOOD.replace('"12#"', '"12x"')) == [
        "s.yaml:12: turns[2]: dtmf '12x': keypad digits are 0-9 * # A-D"]


def test_an_unknown_agent_lists_the_known_ones():
    [problem] = problems(GOOD.replace("agent: assistant", "agent: butler"))
    assert problem.startswith("s.yaml:2: agent: unknown agent 'butler'; known: assistant, booking")


def test_max_wer_on_a_typed_turn_is_refused():
    text = GOOD.replace("reply: {must:", "max_wer: 0.2\n      reply: {must:")
    assert problems(text) == ["s.yaml:6: turns[0]: expect.max_wer applies to spoken turns only"]


def test_the_first_turn_cannot_barge_in():
    text = GOOD.replace("  - type: Remind", "  - barge_in_after_ms: 100\n    type: Remind")
    [problem] = problems(text)
    assert problem.startswith("s.yaml:5: turns: the first turn cannot barge in")


def test_an_unknown_builtin_check_to_skip_is_named():
    text = GOOD.replace("expect: {interrupted: true}", "expect: {skip_checks: [no_ecko]}")
    [problem] = problems(text)
    assert problem.startswith("s.yaml:16: turns[4].expect.skip_checks: unknown check 'no_ecko'")


def test_broken_yaml_reports_its_line():
    [problem] = problems(GOOD.replace("  - silence_ms: 1500", "  - silence_ms: [1500"))
    assert problem.startswith("s.yaml:14: not valid YAML")


def test_a_missing_wav_is_named_with_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("  - say: Yes please.", "  - say: Yes please.\n    audio: clips/yes.wav"))
    with pytest.raises(ScenarioError) as err:
        load_scenarios([path])
    assert err.value.problems == [f"{path}:11: turns[1].audio: no such file {tmp_path / 'clips' / 'yes.wav'}"]


def test_every_file_is_checked_and_all_problems_are_reported_together(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)  # same name: reminder
    (tmp_path / "c.yaml").write_text(GOOD.replace("category: numbers_times", "category: Numbers Times"))
    with pytest.raises(ScenarioError) as err:
        load_scenarios([tmp_path])
    found = err.value.problems
    assert len(found) == 2
    assert found[0].startswith(f"{tmp_path / 'c.yaml'}:3: category: String should match pattern")
    assert found[1] == f"{tmp_path / 'b.yaml'}:1: name: 'reminder' is also the name of {tmp_path / 'a.yaml'}"


def test_select_filters_by_tag_name_glob_category_and_agent(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: reminder", "name: other").replace("tags: [ci]", "tags: []"))
    everything = load_scenarios([tmp_path])
    assert [s.name for s in select(everything, tags=["ci"])] == ["reminder"]
    assert [s.name for s in select(everything, names=["oth*"])] == ["other"]
    assert select(everything, categories=["arithmetic"]) == []
    assert len(select(everything, agents=["assistant"])) == 2


def test_the_shipped_suite_loads_has_40_scenarios_and_a_typed_ci_subset():
    suite = load_scenarios([shipped_scenarios_dir()])
    assert len(suite) >= 40
    categories = {s.category for s in suite}
    assert {"no_tool", "side_question", "correction", "numbers_times", "unknown_city", "arithmetic", "chit_chat",
            "statement", "barge_in", "dtmf"} <= categories
    ci = select(suite, tags=["ci"])
    assert ci and not any(s.spoken for s in ci), "the ci subset is typed (fast)"
    assert {s.agent for s in suite} == {"assistant", "booking"}


def test_the_cli_names_the_line_and_field_and_runs_nothing(tmp_path, capsys):
    from voice.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace('"12#"', '"12x"'))
    assert main(["eval", str(bad), "--url", "ws://127.0.0.1:9/ws"]) == 2
    err = capsys.readouterr().err
    assert "nothing was run" in err and f"{bad}:12: turns[2]: dtmf '12x'" in err


def test_the_cli_lists_the_selected_scenarios(capsys):
    from voice.cli import main

    assert main(["eval", "--list", "--tag", "ci"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed and all(" ci" in line for line in listed)
