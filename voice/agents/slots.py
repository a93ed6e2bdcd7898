"""Typed slot values read from what the user said: numbers, clock times, yes/no, enum choices.

Why deterministic parsers and not the LLM: a 0.5B model asked to fill a slot through a tool call
is right about two times in three and costs a second LLM round; "four people at seven" is read
here in microseconds, and read the same way every time. The LLM still fills free-text slots (a
name) through the flow's `set_slots` tool.

Input is an ASR transcript or typed text: digits or words ("7", "seven"), "p.m."/"pm", "19:00",
"half past seven". `strict` parsing accepts only values anchored by context ("4 people", "at 7",
"7 pm"); flows use it for the slots of other states, so an answer to one question can fill a later
one without a stray number being misread.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "a couple": 2, "a couple of": 2, "just me": 1, "myself": 1,
}
YES = ("yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "please do", "go ahead",
       "absolutely", "perfect", "sounds good", "that's right", "that is right", "confirm", "of course",
       "do it", "definitely", "great")
NO = ("no", "nope", "not", "don't", "do not", "wrong", "cancel", "wait", "nah", "never mind", "incorrect")
PEOPLE_UNITS = ("people", "persons", "person", "guests", "of us", "adults", "pax")
_TIME_CUES = r"(?:am|pm|o'?clock|in the (?:evening|morning|afternoon)|tonight|at night)"


def normalize(text: str) -> str:
    """Lower case, "p.m." -> "pm", punctuation except ':' and "'" turned into spaces."""
    text = text.lower().replace("p.m.", "pm").replace("a.m.", "am").replace("p. m.", "pm")
    text = re.sub(r"(\d)\s*(am|pm)\b", r"\1 \2", text).replace("o clock", "o'clock")
    text = re.sub(r"(\d)\.(\d\d)\b", r"\1:\2", text)  # "7.30" -> "7:30"
    return " ".join(re.sub(r"[^\w:' ]+", " ", text).split())


def has_phrase(text: str, phrase: str) -> bool:
    """Whole-word match of `phrase` in already normalized `text`."""
    return re.search(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", text) is not None


def _number_tokens(text: str) -> list[tuple[int, int, int]]:
    """(value, start, end) of every number written as digits or words, left to right."""
    found: list[tuple[int, int, int]] = []
    for m in re.finditer(r"(?<![\d:])\d{1,3}(?![\d:])", text):
        found.append((int(m.group()), m.start(), m.end()))
    words = sorted(WORD_NUMBERS, key=len, reverse=True)
    units = "one|two|three|four|five|six|seven|eight|nine"
    pattern = r"(?<![\w'])(" + "|".join(re.escape(w) for w in words) + rf")(?:[ -]({units}))?(?![\w'])"
    for m in re.finditer(pattern, text):
        value = WORD_NUMBERS[m.group(1)] + (WORD_NUMBERS[m.group(2)] if m.group(2) else 0)
        found.append((value, m.start(), m.end()))
    return sorted(found, key=lambda f: f[1])


def parse_integer(text: str, minimum: int | None = None, maximum: int | None = None, *,
                  strict: bool = False, units: tuple[str, ...] = PEOPLE_UNITS) -> int | None:
    """The first in-range number that is not part of a time; `strict`: only next to one of `units`
    ("4 people", "six of us") or after "for"/"party of" ("a table for four")."""
    norm = normalize(text)
    times = [m.span() for m in re.finditer(
        rf"(?:at|by|around|half past|quarter past|quarter to)\s+\S+(?:\s+\S+)?|\S+\s+{_TIME_CUES}|\d+:\d\d", norm)]
    for value, start, end in _number_tokens(norm):
        if any(s <= start < e for s, e in times):
            continue
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            continue
        if strict:
            after = norm[end:end + 12].strip()
            before = norm[max(0, start - 10):start].strip()
            if not (any(after.startswith(u) for u in units) or before.endswith(("for", "party of"))):
                continue
        return value
    return None


def parse_time(text: str, *, strict: bool = False, prefer_pm: bool = True) -> str | None:
    """A clock time as "HH:MM" (24 h). `prefer_pm`: a bare "seven" means 19:00 (restaurants, evenings).

    Accepts "19:00", "7 pm", "7:30", "seven thirty", "half past seven", "quarter to eight", "noon",
    "at 8". `strict` requires a cue: am/pm, o'clock, "at", a colon, or "half/quarter".
    """
    norm = normalize(text)
    # ASR writes "730" for seven thirty; strict parsing reads it so only next to a cue ("730 pm", "at 730")
    packed = r"\b(\d{1,2})([0-5]\d)\b" + (rf"(?=\s*{_TIME_CUES})" if strict else "")
    norm = re.sub(packed, r"\1:\2", norm)
    if strict:
        norm = re.sub(r"\b(at|by|around)\s+(\d{1,2})([0-5]\d)\b", r"\1 \2:\3", norm)
    if has_phrase(norm, "noon") or has_phrase(norm, "midday"):
        return "12:00"
    if has_phrase(norm, "midnight"):
        return "00:00"
    hour = minute = None
    cue = False
    units = "|".join(PEOPLE_UNITS)
    nums = [n for n in _number_tokens(norm) if not re.match(rf"\s*(?:{units})\b", norm[n[2]:])]
    if m := re.search(r"\b(\d{1,2}):(\d\d)\b", norm):
        hour, minute, cue = int(m.group(1)), int(m.group(2)), True
        tail = norm[m.end():]
    elif m := re.search(r"\b(half past|quarter past|quarter to)\s+", norm):
        following = [n for n in nums if n[1] >= m.end()]
        if not following:
            return None
        hour, cue = following[0][0], True
        minute = {"half past": 30, "quarter past": 15, "quarter to": 45}[m.group(1)]
        if m.group(1) == "quarter to":
            hour -= 1
        tail = norm[following[0][2]:]
    else:
        anchored = [n for n in nums if re.search(r"(?:at|by|around)\s*$", norm[:n[1]])
                    or re.match(rf"\s*(?:\d\d|[a-z]+ ?)?\s*{_TIME_CUES}", norm[n[2]:])]
        picked = anchored or ([] if strict else nums)
        if not picked:
            return None
        hour, _, end = picked[0]
        cue, minute = bool(anchored), 0
        # "seven thirty", "7 15 pm": a second number right after the hour is the minutes
        after = [n for n in nums if 0 < n[1] - end <= 1]
        if after and (after[0][0] in (15, 30, 45) or re.match(r"\s*(?:am|pm)", norm[after[0][2]:])):
            minute, end = after[0][0], after[0][2]
        tail = norm[end:]
    if strict and not cue:
        return None
    pm = re.match(r"\s*(?:pm|in the (?:evening|afternoon)|tonight|at night)", tail) is not None
    am = re.match(r"\s*(?:am|in the morning)", tail) is not None
    if hour is None or minute is None or not (0 <= hour <= 24 and 0 <= minute < 60):
        return None
    if (pm and hour < 12) or (not am and not pm and prefer_pm and 1 <= hour <= 11):
        hour += 12
    if am and hour == 12:
        hour = 0
    return f"{hour % 24:02d}:{minute:02d}"


def parse_yes_no(text: str) -> bool | None:
    """True for a yes, False for a no, None when unclear (both, or neither)."""
    norm = normalize(text)
    yes = any(has_phrase(norm, w) for w in YES)
    no = any(has_phrase(norm, w) for w in NO)
    if yes == no:
        return None
    return yes


def match_choice(text: str, choices: dict[str, tuple[str, ...]]) -> str | None:
    """The choice whose name or one of whose synonyms appears in `text` (the longest match wins,
    so "japanese" beats "pan"); None when none or two different ones appear."""
    norm = normalize(text)
    hits: dict[str, int] = {}
    for value, synonyms in choices.items():
        for phrase in (value.replace("_", " "), *synonyms):
            if has_phrase(norm, phrase.lower()):
                hits[value] = max(hits.get(value, 0), len(phrase))
    if not hits:
        return None
    best = sorted(hits.items(), key=lambda kv: -kv[1])
    if len(best) > 1 and best[0][1] == best[1][1]:
        return None
    return best[0][0]


def _clock(value: Any) -> Any:
    """"18:00 24h", "6 pm", "6:30pm" -> "18:00", "18:30": what small models put in time arguments."""
    if isinstance(value, str):
        return parse_time(value, prefer_pm=False) or value
    return value


#: A tool argument type: a clock time, normalised to "HH:MM" (24 h) before validation.
ClockTime = Annotated[str, BeforeValidator(_clock), Field(pattern=r"^\d\d:\d\d$", description="time, HH:MM 24-hour")]


def spoken_time(hhmm: str) -> str:
    """"19:30" -> "7:30 pm", "12:00" -> "12 noon": how a time is said, not read."""
    try:
        hour, minute = (int(x) for x in hhmm.split(":"))
    except ValueError:
        return hhmm
    if (hour, minute) == (12, 0):
        return "12 noon"
    suffix = "am" if hour < 12 else "pm"
    hour12 = hour % 12 or 12
    return f"{hour12}{f':{minute:02d}' if minute else ''} {suffix}"
