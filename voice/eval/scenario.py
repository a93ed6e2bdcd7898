"""Scenario files: a scripted conversation with one agent and what each turn must (not) produce.

A scenario is YAML (docs/eval.md has the full format):

    name: reminder_evening            # default: the file name
    agent: assistant                  # assistant | booking
    category: numbers_times
    tags: [ci]
    turns:
      - type: Remind me to call my sister at 6 pm.      # typed (CONTROL text)
        expect:
          tools: [{name: add_reminder, args: {time: "18:00"}}]
      - say: Yes please.                                 # spoken (Piper), or `audio: file.wav`
        expect: {reply: {must_not: ["\\?"]}}

Errors name the file, the line and the field (`booking_dtmf.yaml:14: turns[2].dtmf: ...`), read
from the YAML node marks, so an author finds the mistake without counting list items.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from voice.agents import AGENTS

DTMF_DIGITS = re.compile(r"^[0-9*#A-D]+$")
DEFAULT_TURN_TIMEOUT_S = 60.0
#: Checks every turn runs unless its `skip_checks` names them (see voice/eval/checks.py).
BUILTIN_CHECKS = ("no_internal_text", "no_echo", "no_false_claims")


class ScenarioError(Exception):
    """One or more problems in scenario files; each line of str() is `file:line: field: why`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolExpect(_Strict):
    """A call the agent must make this turn; `args` is a subset match (times as "18:00")."""

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class ReplyExpect(_Strict):
    """What the reply text must and must not say. Regexes are case-insensitive; words and phrases
    match whole words, case-insensitive."""

    must: list[str] = Field(default_factory=list)       # every regex must match
    must_not: list[str] = Field(default_factory=list)   # no regex may match
    any_words: list[str] = Field(default_factory=list)  # at least one of these words or phrases
    no_words: list[str] = Field(default_factory=list)   # none of these words or phrases
    number: float | None = None                         # says this number, as digits or in words

    @field_validator("must", "must_not")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for i, p in enumerate(patterns):
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"item {i}: bad regex {p!r}: {e}") from None
        return patterns


class Expect(_Strict):
    """Expectations of one turn. Unset fields are not checked; the built-in checks always run
    unless listed in `skip_checks`."""

    max_wer: float | None = Field(None, ge=0)            # spoken: ASR transcript vs the words said
    tools: list[ToolExpect] = Field(default_factory=list)
    no_tools: bool = False                               # no tool may run this turn (a proposal may)
    forbid_tools: list[str] = Field(default_factory=list)  # these tools may not run this turn
    state: str | None = None                             # flow state after the turn ("time" or "booking/time")
    slots: dict[str, Any] = Field(default_factory=dict)  # slot values after the turn (subset)
    reply: ReplyExpect | None = None
    interrupted: bool | None = None                      # the previous reply was (not) cut in this turn
    no_reply: bool = False                               # the agent must stay silent (else: must reply)
    max_voice_to_voice_ms: float | None = Field(None, gt=0)
    max_echo: float = Field(0.8, ge=0, le=1)             # similarity of the reply to the user's words
    audio_max_wer: float = Field(0.35, ge=0)             # check_audio: reply audio vs agent_text
    skip_checks: list[str] = Field(default_factory=list)

    @field_validator("skip_checks")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(BUILTIN_CHECKS))
        if unknown:
            raise ValueError(f"unknown check {unknown[0]!r}; built-in checks: {', '.join(BUILTIN_CHECKS)}")
        return names


class Turn(_Strict):
    """One user turn: exactly one of say / audio / type / dtmf / silence_ms."""

    say: str | None = None          # spoken: Piper speaks it (or it is what `audio` says)
    audio: str | None = None        # a WAV file, relative to the scenario file
    type: str | None = None         # typed text (CONTROL "text")
    dtmf: str | None = None         # keypad digits (CONTROL "dtmf")
    silence_ms: float | None = Field(None, gt=0)
    #: Speak (or type) this over the previous turn's reply, this long after its first audio.
    barge_in_after_ms: float | None = Field(None, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    expect: Expect = Field(default_factory=Expect)
    _line: int = PrivateAttr(0)     # set by the loader: where the turn starts in the file

    @model_validator(mode="after")
    def _one_input(self) -> Turn:
        given = [k for k in ("say", "type", "dtmf", "silence_ms") if getattr(self, k) is not None]
        if self.audio is not None and "say" not in given:
            given.append("audio")
        if len(given) != 1:
            raise ValueError("a turn needs exactly one of say, audio, type, dtmf, silence_ms"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.audio is not None and self.type is not None:
            raise ValueError("audio goes with say (the words in the file), not with type")
        if self.dtmf is not None and not DTMF_DIGITS.match(self.dtmf):
            raise ValueError(f"dtmf {self.dtmf!r}: keypad digits are 0-9 * # A-D")
        if self.barge_in_after_ms is not None and self.kind not in ("say", "audio", "type"):
            raise ValueError("barge_in_after_ms goes with a spoken or typed turn")
        if self.expect.max_wer is not None and self.kind not in ("say", "audio"):
            raise ValueError("expect.max_wer applies to spoken turns only")
        return self

    @property
    def kind(self) -> str:
        """say | audio | type | dtmf | silence."""
        if self.audio is not None:
            return "audio"
        if self.silence_ms is not None:
            return "silence"
        return next(k for k in ("say", "type", "dtmf") if getattr(self, k) is not None)

    @property
    def line(self) -> int:
        return self._line

    @property
    def words(self) -> str:
        """What the user said or typed ("" for DTMF, silence, or a WAV without `say`)."""
        return self.say or self.type or ""

    @property
    def spoken(self) -> bool:
        return self.kind in ("say", "audio", "silence")


class Scenario(_Strict):
    name: str = Field(min_length=1)
    agent: str
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)  # more HELLO options (vad, barge_in, profile)
    timeout_s: float = Field(DEFAULT_TURN_TIMEOUT_S, gt=0)   # per turn unless the turn says
    check_audio: bool = False   # transcribe the reply audio and compare it with agent_text
    turns: list[Turn] = Field(min_length=1)
    _path: Path | None = PrivateAttr(None)  # set by the loader

    @property
    def path(self) -> Path | None:
        return self._path

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, agent: str) -> str:
        if agent not in AGENTS:
            raise ValueError(f"unknown agent {agent!r}; known: {', '.join(AGENTS)}")
        return agent

    @field_validator("turns")
    @classmethod
    def _barge_in_needs_a_reply_before(cls, turns: list[Turn]) -> list[Turn]:
        if turns and turns[0].barge_in_after_ms is not None:
            raise ValueError("the first turn cannot barge in: barge_in_after_ms cuts the previous turn's reply")
        return turns

    @property
    def spoken(self) -> bool:
        """Whether a microphone stream runs (any spoken, WAV or silence turn)."""
        return any(t.spoken for t in self.turns)

    def audio_path(self, turn: Turn) -> Path | None:
        if turn.audio is None:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / turn.audio).resolve()


# ---------------------------------------------------------------- loading


def _marks(node: yaml.Node, loc: tuple = (), out: dict[tuple, int] | None = None) -> dict[tuple, int]:
    """1-based line of every key and list item, by its pydantic-style location tuple."""
    out = {} if out is None else out
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            _marks(value, child, out)
            out[child] = key.start_mark.line + 1  # a key's own line, for "unknown field" and "bad value"
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _marks(item, (*loc, i), out)
    return out


def _where(loc: tuple, marks: dict[tuple, int]) -> tuple[int, str]:
    """(line, "turns[2].expect.reply") for a pydantic error location; a missing key's line is its
    parent's."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in marks:
            line = marks[loc[:n]]
            break
    else:
        line = 1
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return line, field


_MESSAGES = {"missing": "required field is missing", "extra_forbidden": "unknown field (docs/eval.md lists the fields)"}


def parse_scenario(text: str, path: Path) -> Scenario:
    """A scenario from YAML text; raises ScenarioError naming `path`, the line and the field."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ScenarioError([f"{path}:{line}: not valid YAML: {getattr(e, 'problem', None) or e}"]) from None
    if not isinstance(data, dict) or node is None:
        raise ScenarioError([f"{path}:1: a scenario is a YAML mapping (name, agent, category, turns)"])
    marks = _marks(node)
    data.setdefault("name", path.stem)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            line, field = _where(tuple(err["loc"]), marks)
            message = _MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}:{line}: {field or 'scenario'}: {message}")
        raise ScenarioError(problems) from None
    scenario._path = path
    missing = []
    for i, turn in enumerate(scenario.turns):
        turn._line = marks.get(("turns", i), 0)
        audio = scenario.audio_path(turn)
        if audio is not None and not audio.is_file():
            missing.append(f"{path}:{marks.get(('turns', i, 'audio'), turn.line)}: turns[{i}].audio: "
                           f"no such file {audio}")
    if missing:
        raise ScenarioError(missing)
    return scenario


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError([f"{path}: cannot read: {e}"]) from None
    return parse_scenario(text, path)


def scenario_files(paths: list[Path]) -> list[Path]:
    """The .yaml/.yml files named, and those in the folders named (sorted)."""
    files: list[Path] = []
    for p in paths:
        files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
    return files


def load_scenarios(paths: list[Path]) -> list[Scenario]:
    """Every scenario in `paths`, checked all at once: one ScenarioError lists every problem of
    every file (and duplicate names), so nothing runs until all are right."""
    scenarios, problems = [], []
    for file in scenario_files(paths):
        try:
            scenarios.append(load_scenario(file))
        except ScenarioError as e:
            problems += e.problems
    seen: dict[str, Path | None] = {}
    for s in scenarios:
        if s.name in seen:
            problems.append(f"{s.path}:1: name: {s.name!r} is also the name of {seen[s.name]}")
        seen[s.name] = s.path
    if not scenarios and not problems:
        problems.append(f"no scenario files in {', '.join(map(str, paths))}")
    if problems:
        raise ScenarioError(problems)
    return scenarios


def select(scenarios: list[Scenario], *, tags: list[str] | None = None, names: list[str] | None = None,
           categories: list[str] | None = None, agents: list[str] | None = None) -> list[Scenario]:
    """Scenarios that have any of `tags`, one of `names` (a name or a glob), one of `categories`."""
    from fnmatch import fnmatch

    out = scenarios
    if tags:
        out = [s for s in out if set(tags) & set(s.tags)]
    if names:
        out = [s for s in out if any(fnmatch(s.name, n) for n in names)]
    if categories:
        out = [s for s in out if s.category in categories]
    if agents:
        out = [s for s in out if s.agent in agents]
    return out


def shipped_scenarios_dir() -> Path:
    """voice/eval/scenarios: the suite shipped with the package."""
    return Path(__file__).with_name("scenarios")
