"""The last check before the agent's words are spoken: whole sentences that must never be heard.

A 0.5B model repeats what it was shown (its instructions, tool results, the user's question) and
claims actions nobody took. Measured on the shipped agent before this guard: "Call the tool again
with correct arguments, or ask the user for the missing detail.", "Tool call get_weather(city=
"Paris", day="tomorrow") was not valid: ...", the user's request read back word for word, "I've set
a reminder" with no reminder stored. So every sentence of model prose is checked, and dropped, when:

* **internal**: it shares a run of words with a text the model was given but the user was not (the
  prompt, tool descriptions, notes; `internal`), or with a phrase of our own instructions
  (INTERNAL_PHRASES, incl. those of earlier versions), or it reads like code (`name(`, `key=`,
  braces, snake_case names) or talks about the machinery ("the user", "tool call");
* **echo**: every content word of it was in the user's turn (it adds nothing: "23 times 47.");
* **claim**: it says an action was done ("I've booked", "your reminder is set", "I'll remind you")
  while no action tool succeeded in this turn (`acted`).

Checks run as text completes: a clause once the sentence so far has MIN_CLAUSE_WORDS words (what
the chunker's first piece waits for anyway, so the first audio is not delayed), else the whole
sentence. Each part is checked alone and with the sentence so far; once a sentence fails, the rest
of it is dropped too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["internal", "echo", "claim"]
MIN_SHARED_WORDS = 5      # a run this long shared with an internal text marks a sentence internal...
MIN_SHARED_FRACTION = 0.5  # ...when it is at least this part of the sentence (or 8 words long)
LONG_SHARED_WORDS = 8
MIN_ECHO_WORDS = 3         # content words a sentence needs before it can count as an echo
ECHO_RUN_FRACTION = 0.8    # ...and this part of its words must be one run of the user's words
MIN_CLAUSE_WORDS = 4       # a clause is released (checked) on its own once the sentence has this many words

#: Instruction phrases the agent has given the model, now and in earlier versions (a model may have
#: learned nothing from them but still repeat them; they never belong in a reply).
INTERNAL_PHRASES = (
    "Call the tool again with correct arguments, or ask the user for the missing detail.",
    "There is no tool, and none is needed. Answer the user directly in one or two short spoken sentences.",
    "Do not mention tools.",
    "Reply to the user now in one short spoken sentence: apologise that you could not do this, and offer to "
    "try again.",
    "Write your reply to the user now, in one or two short spoken sentences, using this result.",
    "The user said no, so it was not done. Ask what they would like instead.",
    "Use a tool when the user asks about the weather or about reminders, even for a city or reminder you do "
    "not know. Answer everything else yourself.",
    "Everything you write is spoken aloud, so answer in one to three short sentences.",
    "the user did not say; do not guess",
)
_CODE = re.compile(r"[{}\[\]<>=_`|\\]|\b\w+\(|\bnull\b|\"\w+\"\s*:")
_META = re.compile(r"\b(the user|tool calls?|(?:the|a|no|this|that|any) tools?|function calls?|arguments?|json|"
                   r"schema|system prompt|spoken sentences?|do not guess|not valid)\b", re.I)
#: Each of these alone marks machinery talk: a reply speaks *to* the user, never of "the user".
_STRONG_META = re.compile(r"^(the user|tool calls?|(?:the|a|no|this|that|any) tools?|function calls?|json|schema|"
                          r"system prompt|do not guess)$", re.I)
_CLAIM = re.compile(
    r"\b(?:i(?:'ve| have)(?: just| now| already)?|i(?:'ll| will)|i(?:'m| am) going to|i(?: just)?)\s+"
    r"(?:set|booked|book|sent|send|reminded|remind|scheduled|schedule|saved|save|added|add|created|create|"
    r"cancell?ed|cancel|ordered|order|made|noted|reserved|reserve|put)\b"
    r"|\b(?:your|the|a)\s+(?:reminder|booking|table|reservation|appointment|message|order|alarm|timer)\s+"
    r"(?:is|has been|was|'s)\s+(?:now\s+)?(?:set|booked|confirmed|saved|sent|scheduled|added|made|created|"
    r"reserved|cancell?ed)\b"
    r"|\b(?:it's|it is|that's|that is|all)\s+(?:done|booked|set up)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_CLAUSE = re.compile(r"[,;:](?=\s)\s*|\s[—–-]\s")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOP_WORDS = frozenset(re.findall(r"\S+", """a an the is are was were be been am i you your my me we our it its
it's this that there here of to in on at for with and or but so do does did can could will would should please
what what's how who when where which tell me about just okay ok yes no sure"""))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def longest_shared_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words that `a` and `b` share (dynamic programming)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


@dataclass
class SpeechGuard:
    """Per LLM round: feed spoken text, get back the sentences that passed; see the module docstring.

    `internal`: texts the model saw that the user must not hear; `user_text`: this turn's words;
    `acted`: whether an action tool succeeded this turn (claims are then true)."""

    internal: Iterable[str] = ()
    user_text: str = ""
    acted: bool = False
    dropped: list[tuple[Verdict, str]] = field(default_factory=list)
    _buffer: str = ""
    _sentence: str = ""                 # the current sentence's text released or dropped so far
    _failed: Verdict | None = None      # why the current sentence is being dropped
    _internal: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._internal = [words(t) for t in [*INTERNAL_PHRASES, *self.internal] if t]

    def feed(self, text: str) -> str:
        """Text to speak now: the checked parts of what has been fed so far."""
        self._buffer += text
        out = []
        while (cut := self._next_cut()) is not None:
            part, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.append(self._pass(part, ends=_SENTENCE.search(part) is not None))
        return "".join(out)

    def finish(self) -> str:
        """The rest (no end mark needed), checked."""
        rest, self._buffer = self._buffer, ""
        return self._pass(rest, ends=True)

    def _next_cut(self) -> int | None:
        end = _SENTENCE.search(self._buffer)
        limit = end.start() if end else len(self._buffer)
        for m in _CLAUSE.finditer(self._buffer, 0, limit):
            if len(words(self._sentence + self._buffer[:m.start()])) >= MIN_CLAUSE_WORDS:
                return m.end()
        return end.end() if end else None

    def _pass(self, part: str, *, ends: bool) -> str:
        self._sentence += part
        if self._failed is None and words(part):
            self._failed = self.verdict(part) or self.verdict(self._sentence)
        out = "" if self._failed else part
        if ends:
            if self._failed is not None:
                self.dropped.append((self._failed, self._sentence.strip()))
            self._sentence, self._failed = "", None
        return out

    def verdict(self, sentence: str) -> Verdict | None:
        """Why `sentence` must not be spoken, or None."""
        said = words(sentence)
        if not said:
            return None
        if self._is_internal(sentence, said):
            return "internal"
        if not self.acted and claims_action(sentence):
            return "claim"
        if is_echo(said, words(self.user_text)):
            return "echo"
        return None

    def _is_internal(self, sentence: str, said: list[str]) -> bool:
        if _CODE.search(sentence) or _meta_heavy(sentence):
            return True
        for text in self._internal:
            run = longest_shared_run(said, text)
            if run >= LONG_SHARED_WORDS or (run >= MIN_SHARED_WORDS and run >= MIN_SHARED_FRACTION * len(said)):
                return True
            if run >= 3 and run == len(said):  # a short sentence that is all instruction ("Do not guess.")
                return True
        return False


def _meta_heavy(sentence: str) -> bool:
    """Talk about the machinery: one strong cue ("the user", "no tool"), or two weaker ones."""
    hits = {m.group().lower() for m in _META.finditer(sentence)}
    return any(_STRONG_META.match(h) for h in hits) or len(hits) >= 2


def is_echo(said: list[str], heard: list[str]) -> bool:
    """The sentence is the user's words read back: its content words all come from the user's turn,
    and most of it is one run of them ("It is sunny in Rome today." answering "Is it sunny in Rome
    today?" is an answer, not an echo: the run is 4 of 6 words)."""
    content = [w for w in said if w not in STOP_WORDS]
    return (len(content) >= MIN_ECHO_WORDS and set(content) <= set(heard)
            and longest_shared_run(said, heard) >= ECHO_RUN_FRACTION * len(said))


def claims_action(text: str) -> bool:
    """Says an action is done or will be done by the agent; a question ("Shall I book it?") is not."""
    text = text.replace("’", "'").strip()
    return not text.endswith("?") and _CLAIM.search(text) is not None
