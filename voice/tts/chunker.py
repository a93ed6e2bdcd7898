"""LLM token stream -> speakable pieces of text for the TTS.

The first piece is cut early (at a clause boundary once it has a few words) because it sets the
time to first audio; later pieces are whole sentences, since prosody is better over a sentence and
the TTS runs far faster than real time, so the next piece is ready before the current one ends.

A cut needs to see the character after a punctuation mark: "3." may continue as "3.5", "Dr." is
followed by a name, "etc." mid-sentence by a lower-case word. So a cut waits for the whitespace
(and, after a period, the next letter) that follows it; LLM tokens usually carry the space and the
next word's start together, so this costs no extra token in practice.

Markdown the model may emit (bold, code, headings, list bullets, links, emoji) is removed from each
piece so the TTS does not read symbols aloud.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

# Closing marks that may follow the punctuation that ends a sentence or a clause.
_CLOSERS = "\"'”’)]*_`"
_SENTENCE_END = re.compile(rf"(?:\.\.\.|[.!?…])+[{re.escape(_CLOSERS)}]*(?=\s)|\n")
# Dashes: an em/en dash (not between digits, "5–10" is a range) or a spaced hyphen " - ".
_CLAUSE_END = re.compile(
    rf"[,;:][{re.escape(_CLOSERS)}]*(?=\s)|(?<!\d)[—–](?=[\s\S])|[—–](?=\D)|\s--?(?=\s)"
)
_WORD = re.compile(r"\S*\w\S*")

#: Abbreviations that never end a sentence: a name or a number always follows them.
TITLES = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "rev", "sr", "gen", "col", "lt", "sgt", "capt",
    "gov", "sen", "rep", "fig", "approx", "vs", "dept", "ave", "blvd", "vol", "ch", "pp",
})
_INITIALISM = re.compile(r"^(?:[A-Za-z]\.)+$")  # U.S., e.g., i.e., a.m., J.

_FENCE = re.compile(r"^\s*```.*$")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*>+\s?")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*+|`+|~~|(?<!\w)_+|_+(?!\w)")
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0001F1E6-\U0001F1FF\U00002B00-\U00002BFF"
    "\uFE0F\u200D\u20E3]"
)
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?…])")
_TRAILING_HYPHEN = re.compile(r"\s+-{1,2}$")


class ChunkerSettings(BaseModel):
    """When the chunker cuts. Counts are words (runs of non-space containing a letter or digit)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    first_min_words: int = Field(4, ge=1)    # first piece may end at a clause boundary from this many words
    max_words: int = Field(25, ge=2)         # later pieces end at a clause boundary once this long
    hard_max_words: int = Field(50, ge=2)    # no boundary at all: cut between words at this length
    early_first_piece: bool = True           # False: the first piece also waits for a sentence end


class TextChunker:
    """Cuts one reply's text stream into pieces. Not thread-safe; one per session.

    `feed(delta)` returns the pieces completed by `delta` (often none); `flush()` returns the
    rest at the end of the reply and resets the chunker for the next one.
    """

    def __init__(self, settings: ChunkerSettings | None = None) -> None:
        self.settings = settings or ChunkerSettings()
        self._buffer = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        """Append an LLM text delta; return the speakable pieces it completed, in order."""
        self._buffer += delta
        pieces: list[str] = []
        while (cut := self._next_cut()) is not None:
            raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
            self._emit(raw, pieces)
        return pieces

    def flush(self) -> list[str]:
        """End of the reply: every remaining piece (at most the usual cuts plus the tail)."""
        pieces = self.feed("")
        self._emit(self._buffer, pieces)
        self.reset()
        return pieces

    def reset(self) -> None:
        """Forget buffered text (barge-in, or a new reply); the next piece is a first piece again."""
        self._buffer = ""
        self._first = True

    def _emit(self, raw: str, pieces: list[str]) -> None:
        text = clean_markdown(raw)
        if any(ch.isalnum() for ch in text):
            pieces.append(text)
            self._first = False

    def _next_cut(self) -> int | None:
        """Index just after the first acceptable cut in the buffer, or None (wait for more text)."""
        text = self._buffer
        s = self.settings
        clause_words = s.first_min_words if self._first and s.early_first_piece else s.max_words
        sentence = self._sentence_cut(text)
        limit = sentence if sentence is not None else len(text)
        for m in _CLAUSE_END.finditer(text, 0, limit):
            if _count_words(text[: m.end()]) >= clause_words:
                return m.end()
        if sentence is not None:
            return sentence
        words = list(_WORD.finditer(text))
        # Only words followed by whitespace are complete; cut after the hard_max_words-th one.
        complete = [w for w in words if w.end() < len(text)]
        if len(complete) >= s.hard_max_words:
            return complete[s.hard_max_words - 1].end()
        return None

    def _sentence_cut(self, text: str) -> int | None:
        for m in _SENTENCE_END.finditer(text):
            if m.group() == "\n" or _ends_sentence(text, m.start(), m.end()):
                return m.end()
        return None


def _count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether punctuation text[start:end] (followed by whitespace) ends a sentence."""
    mark = text[start:end].rstrip(_CLOSERS)
    if mark[-1] in "!?":
        return True
    rest = text[end:].lstrip(" \t")
    if rest.startswith("\n"):
        return True
    if not rest:
        return False  # wait for the next word: a lower-case one means the sentence goes on
    if rest[0].islower():
        return False
    if mark.endswith("…") or mark.endswith("..."):
        return True
    before = text[:start]  # the buffer starts where the current piece starts
    if before.strip().isdigit():
        return False  # "2. Call the restaurant": a numbered list item, not a sentence
    word = (before.split()[-1:] or [""])[0].lstrip(_CLOSERS + "(“‘") + "."
    return not (_INITIALISM.match(word) or word[:-1].lower() in TITLES)


def clean_markdown(text: str) -> str:
    """Remove markdown and emoji from one piece, keeping the words; collapse whitespace."""
    lines = []
    for line in text.splitlines():
        if _FENCE.match(line):
            continue
        line = _HEADING.sub("", line)
        line = _QUOTE.sub("", line)
        line = _BULLET.sub("", line)
        lines.append(line)
    out = " ".join(lines)
    out = _IMAGE_OR_LINK.sub(r"\1", out)
    out = _EMPHASIS.sub("", out)
    out = _EMOJI.sub("", out)
    out = out.replace("|", " ")
    out = _SPACES.sub(" ", out).strip()
    out = _TRAILING_HYPHEN.sub(",", out)  # a piece cut at " - " ends in a pause, not a symbol
    return _SPACE_BEFORE_PUNCT.sub(r"\1", out)
