"""The checks of one turn: pure functions from what happened to pass/fail with a readable reason.

What happened in a turn (`TurnFacts`) is built by the runner from the server's events; each check
returns a `Check` whose `detail` says what was expected and what was found, quoting the agent,
because a failure report is only useful if it shows what the agent said.

Built-in checks (every turn, unless `skip_checks` names them):
- no_internal_text: the reply contains none of the agent's internal notes, prompt lines, tool
  names or JSON (phrases taken from voice/llm/agent.py, toolcalls.py, flows.py and tools.py);
- no_echo: the whole reply, or one of its sentences, is not the user's words back (word similarity
  with you/I swapped, above `max_echo`). User turns under 4 words are not judged; a short phrase
  (under 6 words) read back inside a longer reply is grounding ("A table for 2. What time...?"),
  a read-back framed as a confirmation question ("Shall I ...?") confirms, a sentence that negates
  what the user said ("I can't check the weather in Oslo") refuses, and a statement after a
  question answers it ("Yes, it is going to be sunny in Tokyo tomorrow"): after a question only a
  question back can be an echo;
- no_false_claims: the reply does not say something was done, booked, set, sent or reminded
  unless a tool succeeded in this turn.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from voice.eval.scenario import Expect, ReplyExpect, ToolExpect
from voice.eval.text import clock_time, numbers_in, sentences, wer, words


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class ToolUse:
    """A tool call in a turn: announced (tool_call event) and/or run (tool_result event)."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    ok: bool | None = None      # None: no result in this turn (a consequential call awaiting yes)
    result: Any = None
    announced: bool = True      # False: announced in an earlier turn, run (or declined) in this one

    @property
    def happened(self) -> bool:
        """The tool ran (or was tried) this turn. A consequential call only proposed ("Shall I book
        it?", no result yet) did not happen, nor did an earlier proposal declined now."""
        return self.ok is not None and (self.announced or self.ok)


@dataclass
class TurnFacts:
    """What one turn produced, as the checks see it."""

    kind: str                                   # say | audio | type | dtmf | silence
    user_words: str                             # what was said or typed ("" for DTMF / silence)
    transcript: str = ""                        # the server's final transcript(s) of spoken input
    reply: str = ""                             # the agent's whole reply text (or what was cut)
    tools: list[ToolUse] = field(default_factory=list)
    state: str | None = None                    # flow state after the turn
    slots: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    voice_to_voice_ms: float | None = None
    audio_transcript: str | None = None         # Whisper on the reply audio (check_audio)


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit - 1] + "…")


# ---------------------------------------------------------------- tools


def values_match(expected: Any, actual: Any) -> bool:
    """Expected value vs actual argument: times as HH:MM, numbers by value, text ignoring case and
    punctuation, {regex: ...} by search, dicts as subsets, lists item by item."""
    if isinstance(expected, dict) and set(expected) == {"regex"}:
        return re.search(str(expected["regex"]), str(actual), re.I) is not None
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and values_match(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            values_match(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, bool) or expected is None:
        return expected == actual
    if isinstance(expected, int | float):
        try:
            return float(actual) == float(expected)
        except (TypeError, ValueError):
            return False
    if (want := clock_time(expected)) is not None:
        return clock_time(actual) == want
    return words(str(expected)) == words(str(actual))


def _show(uses: list[ToolUse]) -> str:
    return "; ".join(f"{u.name}({json.dumps(u.arguments, ensure_ascii=False)})" for u in uses) or "no tool call"


def check_tools(expected: list[ToolExpect], uses: list[ToolUse]) -> list[Check]:
    out = []
    for want in expected:
        hit = any(u.name == want.name and values_match(want.args, u.arguments) for u in uses)
        shown = f"{want.name}({json.dumps(want.args, ensure_ascii=False)})"
        out.append(Check("tool_called", hit, f"expected {shown}; got {_show(uses)}"))
    return out


def check_no_tools(uses: list[ToolUse], forbidden: list[str] | None = None) -> Check:
    """No tool at all (forbidden None), or none of the `forbidden` names."""
    made = [u for u in uses if u.happened]
    bad = made if forbidden is None else [u for u in made if u.name in forbidden]
    name = "no_tools" if forbidden is None else "forbidden_tools"
    return Check(name, not bad, f"called {_show(bad)}" if bad else "")


# ---------------------------------------------------------------- reply text


def _has_phrase(text_words: list[str], phrase: str) -> bool:
    want = words(phrase)
    n = len(want)
    return n > 0 and any(text_words[i:i + n] == want for i in range(len(text_words) - n + 1))


def check_reply(reply: str, expect: ReplyExpect) -> list[Check]:
    said = _quote(reply)
    out = [Check("reply_must", re.search(p, reply, re.I) is not None, f"/{p}/ not in {said}") for p in expect.must]
    out += [Check("reply_must_not", (m := re.search(p, reply, re.I)) is None,
                  f"/{p}/ matched {m.group()!r} in {said}" if m else "") for p in expect.must_not]
    reply_words = words(reply)
    if expect.any_words:
        hit = any(_has_phrase(reply_words, w) for w in expect.any_words)
        out.append(Check("reply_any_words", hit, f"none of {expect.any_words} in {said}"))
    if expect.no_words:
        found = [w for w in expect.no_words if _has_phrase(reply_words, w)]
        out.append(Check("reply_no_words", not found, f"{found} in {said}" if found else ""))
    if expect.number is not None:
        found_numbers = numbers_in(reply)
        out.append(Check("reply_number", expect.number in found_numbers,
                         f"expected {expect.number:g}; numbers said: {[f'{n:g}' for n in found_numbers]} in {said}"))
    return out


#: The agent's own notes and prompt, as they leak into replies (voice/llm/toolcalls.py `_note`,
#: flows.py `prompt`, tools.py error messages, the assistant's tool rules), and the shapes of code.
INTERNAL_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"</?tool_call>|\btool[ _-]?calls?\b|\bfunction calls?\b", "a tool call"),
    (r"\b(?:the|a|no|this|that) tools?\b|\bcall (?:it|the tool) again\b", "talk of tools"),
    (r"\bnone is needed\b|\bdo not mention\b|\bwith correct arguments\b|\bmissing detail\b", "a note to the model"),
    (r"\bwas not valid\b|\bresult of \w+\s*\(|\bwrite your reply\b|\bspoken sentences?\b", "a note to the model"),
    (r"\bapologi[sz]e that you\b|\boffer to try again\b|\breply to the user now\b", "a note to the model"),
    (r"\bthe user(?:'s)?\b", "'the user' (the agent speaks to the user, not about them)"),
    (r"\bdo not guess\b|\bdon't guess\b|\bdid not say \w+ '", "a tool error message"),
    (r"\byour goal now\b|\bsay something like\b|\bknown so far\b|\babout the user\b", "a prompt line"),
    (r"\bearlier in this conversation\b|\brules:|\beverything you write is spoken\b", "a prompt line"),
    (r"\buse a tool when\b|\banswer everything else yourself\b|\bsystem prompt\b", "a prompt line"),
    (r"\b(?:system|assistant)\s*:", "a role label"),
    (r"\b[a-z]+_[a-z0-9_]+\b", "an identifier (snake_case)"),
    (r"\b\w+\(\s*\w+\s*=|\b\w+\(\s*\)", "call syntax"),
    (r"[{}\[\]<>]|\"\w+\"\s*:", "JSON or markup"),
    (r"\bjson\b|\bschema\b|\bparameters?\b|\bungrounded\b", "a technical term"),
)


def check_internal_text(reply: str) -> Check:
    for pattern, what in INTERNAL_PATTERNS:
        if m := re.search(pattern, reply, re.I):
            return Check("no_internal_text", False, f"{what}: {m.group()!r} in {_quote(reply)}")
    return Check("no_internal_text", True)


_PERSON = {"you": "i", "me": "i", "your": "my", "yours": "mine", "yourself": "myself", "you're": "i'm",
           "youre": "i'm", "you've": "i've", "you'll": "i'll", "you'd": "i'd", "are": "am", "we": "i", "our": "my"}
_QUESTION = re.compile(r"\?\s*$|^\W*(?:is|are|am|do|does|did|can|could|will|would|should|shall|may|what|what's|"
                       r"where|when|who|why|how|which)\b", re.I)
_NEGATIONS = {"not", "no", "never", "can't", "cannot", "don't", "won't", "isn't", "aren't", "doesn't", "didn't",
              "unable", "couldn't", "wouldn't"}
MIN_ECHO_WORDS = 4       # shorter user turns ("yes please") are not judged
SENTENCE_ECHO_WORDS = 6  # a shorter phrase read back inside a longer reply ("A table for 2.") is grounding


def _as_speaker(text: str) -> list[str]:
    """Words with second person mapped to first, so "you love X" equals "I love X"."""
    return [_PERSON.get(w, w) for w in words(text)]


#: A read-back framed as a confirmation ("Shall I remind you to ...?") is asked for, not echoed.
_CONFIRMING = re.compile(r"^\W*(?:shall i|should i|do you want me to|would you like me to|so that's|so that is|"
                         r"just to confirm|to confirm|you'd like|you would like|did you say)\b", re.I)


def echo_score(user: str, reply: str) -> float:
    """0-1: how much the reply (its closest sentence, or the whole of it) is the user's words back;
    sentences that confirm a request before acting on it, or refuse it, are left out."""
    u = _as_speaker(user)
    if len(u) < MIN_ECHO_WORDS:
        return 0.0
    negated = not _NEGATIONS & set(u)
    own = [s for s in sentences(reply) if not _CONFIRMING.search(s)
           and not (negated and _NEGATIONS & set(words(s)))]  # "I can't check X" refuses, it does not echo
    if _QUESTION.search(user):  # "Yes, it is going to be sunny in Tokyo" answers; a question back echoes
        own = [s for s in own if s.endswith("?")]
    parts = [" ".join(own), *(own if len(u) >= SENTENCE_ECHO_WORDS else [])]
    return max((difflib.SequenceMatcher(None, u, _as_speaker(p), autojunk=False).ratio() for p in parts),
               default=0.0)


def check_echo(user: str, reply: str, bound: float) -> Check:
    score = echo_score(user, reply)
    return Check("no_echo", score <= bound, f"similarity {score:.2f} > {bound:.2f}: user {_quote(user)}, "
                                            f"agent {_quote(reply)}" if score > bound else f"{score:.2f}")


_ACT = ("set|booked|book|scheduled|schedule|saved|save|added|add|created|create|sent|send|ordered|order|"
        "placed|place|reserved|reserve|reminded|remind|emailed|email|texted|text|messaged|message|called|call|"
        "cancelled|canceled|cancel|turned on|turn on|played|play|made a (?:reservation|booking|note|appointment)|"
        "make a (?:reservation|booking|note|appointment)")
CLAIM_PATTERNS = (
    rf"\b(?:i|i've|i have|i'll|i will|i'm going to|we've|we have|we'll|we will)\s+(?:\w+ly\s+|just\s+|now\s+|"
    rf"already\s+|also\s+|go ahead and\s+)?(?:{_ACT})\b",
    r"\b(?:is|are|was|were|has been|have been|it's|that's)\s+(?:now\s+|all\s+|been\s+)?"
    r"(?:booked|set|scheduled|saved|added|sent|confirmed|reserved|ordered|placed|created|cancell?ed)\b",
    r"\ball set\b|\ball done\b|\bit's done\b|\bthat's done\b|\bconsider it done\b|^\W*done\b",
)
_NOT_A_CLAIM = re.compile(r"\b(?:not|n't|never|cannot|unable|if|would you|shall i|should i|can i|could i|"
                          r"do you want|let me know|once|when you|whether)\b|n't\b", re.I)


def false_claims(reply: str) -> list[str]:
    """Sentences of `reply` that claim an action was done or will be (questions and negated or
    conditional sentences are not claims)."""
    found = []
    for s in sentences(reply):
        if s.endswith("?") or _NOT_A_CLAIM.search(s):
            continue
        if any(re.search(p, s, re.I) for p in CLAIM_PATTERNS):
            found.append(s)
    return found


def check_claims(reply: str, uses: list[ToolUse]) -> Check:
    acted = any(u.ok for u in uses)
    claims = [] if acted else false_claims(reply)
    return Check("no_false_claims", not claims,
                 f"claims {_quote(claims[0])} but no tool succeeded this turn" if claims else "")


# ---------------------------------------------------------------- one turn


DEFAULT_MAX_WER = 0.4  # spoken turns without expect.max_wer: Piper speech through whisper tiny.en


def check_turn(facts: TurnFacts, expect: Expect, *, audio_checked: bool = False) -> list[Check]:
    """Every check this turn asks for, in a stable order."""
    out: list[Check] = []
    if expect.no_reply:
        out.append(Check("no_reply", not facts.reply.strip(), f"the agent said {_quote(facts.reply)}"))
    elif facts.kind != "silence":
        out.append(Check("replied", bool(facts.reply.strip()), "the agent said nothing"))
    if facts.kind in ("say", "audio") and facts.user_words:
        bound = expect.max_wer if expect.max_wer is not None else DEFAULT_MAX_WER
        score = wer(facts.user_words, facts.transcript)
        out.append(Check("transcript_wer", score <= bound, f"WER {score:.2f} > {bound:.2f}: said "
                         f"{_quote(facts.user_words)}, heard {_quote(facts.transcript)}" if score > bound else
                         f"{score:.2f}"))
    out += check_tools(expect.tools, facts.tools)
    if expect.no_tools:
        out.append(check_no_tools(facts.tools))
    if expect.forbid_tools:
        out.append(check_no_tools(facts.tools, expect.forbid_tools))
    if expect.state is not None:
        ok = facts.state is not None and (facts.state == expect.state or facts.state.endswith("/" + expect.state))
        out.append(Check("state", ok, f"expected state {expect.state!r}; in {facts.state!r}"))
    if expect.slots:
        out.append(Check("slots", values_match(expect.slots, facts.slots),
                         f"expected slots {expect.slots}; have {facts.slots}"))
    if expect.reply is not None:
        out += check_reply(facts.reply, expect.reply)
    if expect.interrupted is not None:
        out.append(Check("interrupted", facts.interrupted == expect.interrupted,
                         "the reply was not interrupted" if expect.interrupted else "the reply was interrupted"))
    if expect.max_voice_to_voice_ms is not None:
        v2v = facts.voice_to_voice_ms
        out.append(Check("voice_to_voice", v2v is not None and v2v <= expect.max_voice_to_voice_ms,
                         f"{v2v:.0f} ms > {expect.max_voice_to_voice_ms:.0f} ms" if v2v is not None
                         else "no turn_metrics with voice_to_voice"))
    if audio_checked and facts.audio_transcript is not None and facts.reply.strip():
        score = wer(facts.reply, facts.audio_transcript)
        out.append(Check("reply_audio_wer", score <= expect.audio_max_wer,
                         f"WER {score:.2f} > {expect.audio_max_wer:.2f}: agent_text {_quote(facts.reply)}, "
                         f"audio heard as {_quote(facts.audio_transcript)}" if score > expect.audio_max_wer
                         else f"{score:.2f}"))
    out += builtin_checks(facts, expect)
    return out


def builtin_checks(facts: TurnFacts, expect: Expect) -> list[Check]:
    skip = set(expect.skip_checks)
    out = []
    if "no_internal_text" not in skip:
        out.append(check_internal_text(facts.reply))
    if "no_echo" not in skip and facts.user_words:
        out.append(check_echo(facts.user_words, facts.reply, expect.max_echo))
    if "no_false_claims" not in skip:
        out.append(check_claims(facts.reply, facts.tools))
    return out
