"""What a transcript's words are, for turn decisions: the words themselves, and whether they are only
a backchannel ("mm-hmm", "yeah, okay") — a listener showing they follow, not taking the turn."""

from __future__ import annotations

import re
from collections.abc import Iterable

_NOT_WORD = re.compile(r"[^\w' -]+")
_REPEATS = re.compile(r"(\w)\1+")


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped ("Mm-hmm, yeah." -> ["mm-hmm", "yeah"])."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def squeeze(text: str) -> str:
    """Runs of one letter as one letter: "hmmmm" and "hmm" are the same backchannel."""
    return _REPEATS.sub(r"\1", text)


def is_backchannel(text: str, backchannels: Iterable[str]) -> bool:
    """Nothing but backchannel words, or no words at all (a noise). Letters held long ("hmmmm",
    "ohhh") compare as one; hyphens split ("mm-hmm" = "mm hmm")."""
    phrase = _plain(text)
    if not phrase:
        return True
    known = {_plain(b) for b in backchannels}
    return phrase in known or all(word in known for word in phrase.split())


def _plain(text: str) -> str:
    return squeeze(" ".join(words(text))).replace("-", " ")
