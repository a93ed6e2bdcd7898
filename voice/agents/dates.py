"""When the user means: days ("tomorrow", "next Friday", "on the 5th") and clock times with the
morning/evening question settled, relative to a clock the agent is given.

Why here and not in the model: Qwen2.5-0.5B turned "remind me at 6 pm" into 06:00 and cannot count
days, while these rules read the user's own words the same way every time. The clock is injected
(`now`), so a test or an eval run fixes it and gets the same dates every run.

Rules (documented in docs/flows.md):
* am/pm, "in the morning", "tonight", "this evening", "afternoon" decide the half of the day;
* without them a time on today means its next occurrence after `now` ("at 6" said at 14:00 is
  18:00), on another day 1-6 mean pm and 7-11 am (daytime);
* "next Friday" is the first Friday after today; "Friday" / "on Friday" / "this Friday" the first
  one from today on; "in 3 days", "in a week", "the day after tomorrow", "on the 5th", "December 5th".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from voice.agents.slots import WORD_NUMBERS, has_phrase, normalize, parse_time

Clock = Callable[[], datetime]
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
            "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
            "twentieth": 20, "thirtieth": 30}
_PM_CUES = ("tonight", "this evening", "in the evening", "in the afternoon", "this afternoon", "at night")
_AM_CUES = ("in the morning", "this morning", "tomorrow morning")
_DAY_OF_MONTH = (r"(?:\d{1,2}(?:st|nd|rd|th)?|(?:twenty|thirty)[ -](?:first|second|third|fourth|fifth|sixth|"
                 r"seventh|eighth|ninth)|" + "|".join(ORDINALS) + ")")
_SAID_NUMBER = r"(?:\d{1,2}(?::\d\d)?|" + "|".join(w for w in WORD_NUMBERS if " " not in w) + ")"


def meridiem(text: str) -> str | None:
    """"pm", "am" or None: whether the words say which half of the day."""
    norm = normalize(text)
    if m := re.search(rf"\b{_SAID_NUMBER}(?:\s+\w+)?\s+(?:o'?clock\s+)?(am|pm)\b", norm):  # not "I am"
        return m.group(1)
    if any(has_phrase(norm, c) for c in _PM_CUES):
        return "pm"
    if any(has_phrase(norm, c) for c in _AM_CUES):
        return "am"
    return None


def parse_clock(text: str, now: datetime, day: date | None = None) -> str | None:
    """The clock time ("HH:MM", 24 h) the words name, or None; see the module docstring for am/pm."""
    hhmm = parse_time(text, strict=True, prefer_pm=False)
    if hhmm is None:
        return None
    hour, minute = (int(x) for x in hhmm.split(":"))
    half = meridiem(text)
    norm = normalize(text)
    if half is not None or hour == 0 or hour >= 13 or re.search(r"\b(noon|midday|midnight)\b", norm):
        if half == "pm" and hour < 12:
            hour += 12
        return f"{hour:02d}:{minute:02d}"
    if re.search(rf"\b0\d:{minute:02d}\b", norm):  # "07:30" written with the zero: a 24-hour time
        return hhmm
    if day is None or day == now.date():
        morning = now.replace(hour=hour % 12, minute=minute, second=0, microsecond=0)
        hour = hour % 12 if morning > now else hour % 12 + 12
    elif hour <= 6:
        hour += 12
    return f"{hour % 24:02d}:{minute:02d}"


def parse_day(text: str, now: datetime) -> date | None:
    """The day the words name, relative to `now`, or None."""
    norm = normalize(text)
    today = now.date()
    if has_phrase(norm, "day after tomorrow"):
        return today + timedelta(days=2)
    if has_phrase(norm, "tomorrow"):
        return today + timedelta(days=1)
    if any(has_phrase(norm, w) for w in ("today", "tonight", "this evening", "this morning", "this afternoon")):
        return today
    if m := re.search(r"\bin (a|one|\d+|[a-z]+) (day|days|week|weeks)\b", norm):
        count = 1 if m.group(1) in ("a", "one") else _number(m.group(1))
        if count is not None:
            return today + timedelta(days=count * (7 if m.group(2).startswith("week") else 1))
    if has_phrase(norm, "next week"):
        return today + timedelta(days=7)
    for i, name in enumerate(WEEKDAYS):
        if has_phrase(norm, name) or has_phrase(norm, name + "s"):
            ahead = (i - today.weekday()) % 7
            if has_phrase(norm, "next " + name) and ahead == 0:
                ahead = 7
            return today + timedelta(days=ahead)
    return _calendar_day(norm, today)


def _calendar_day(norm: str, today: date) -> date | None:
    """"december 5th", "5 december", "the 5th" (this month, or the next one once it has passed)."""
    months = "(?P<month>" + "|".join(MONTHS) + ")"
    day_of_month = f"(?P<day>{_DAY_OF_MONTH})"
    m = (re.search(rf"\b{months}\s+(?:the\s+)?{day_of_month}\b", norm)
         or re.search(rf"\b(?:the\s+)?{day_of_month}\s+(?:of\s+)?{months}\b", norm)
         or re.search(rf"\bthe\s+{day_of_month}\b(?!\s*(?:people|of us|minutes|hours))", norm))
    day = _day_of_month(m.group("day")) if m else None
    if m is None or day is None:
        return None
    named = m.groupdict().get("month")
    if named:  # this year's, or next year's once it has passed
        month = MONTHS.index(named) + 1
        return next((d for y in (today.year, today.year + 1) if (d := _date(y, month, day)) and d >= today), None)
    for ahead in range(13):  # "the 31st": this month's, or the next month that has one
        y, mo = divmod(today.month - 1 + ahead, 12)
        if (found := _date(today.year + y, mo + 1, day)) is not None and found >= today:
            return found
    return None


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _day_of_month(text: str) -> int | None:
    text = text.strip()
    if m := re.match(r"(\d{1,2})", text):
        value = int(m.group(1))
    elif text in ORDINALS:
        value = ORDINALS[text]
    elif m := re.match(r"(twenty|thirty)[ -](\w+)", text):
        value = WORD_NUMBERS[m.group(1)] + ORDINALS.get(m.group(2), 99)
    else:
        return None
    return value if 1 <= value <= 31 else None


def _number(word: str) -> int | None:
    return int(word) if word.isdigit() else WORD_NUMBERS.get(word)


def next_occurrence(hhmm: str, day: date | None, now: datetime) -> date:
    """The day a time without a day means: today if it is still ahead, else tomorrow."""
    if day is not None:
        return day
    hour, minute = (int(x) for x in hhmm.split(":"))
    return now.date() if now.replace(hour=hour, minute=minute, second=0, microsecond=0) > now \
        else now.date() + timedelta(days=1)


def spoken_day(day: date, now: datetime) -> str:
    """"today", "tomorrow", "on Friday" (within a week), else "on Friday, December 5"."""
    delta = (day - now.date()).days
    if delta == 0:
        return "today"
    if delta == 1:
        return "tomorrow"
    name = WEEKDAYS[day.weekday()].title()
    return f"on {name}" if 1 < delta < 7 else f"on {name}, {MONTHS[day.month - 1].title()} {day.day}"


_WHEN_WORDS = (r"(?:(?:at|by|around|for)\s+)?(?:half past|quarter (?:past|to)) \S+|"
               r"(?:at|by|around)\s+" + _SAID_NUMBER + r"(?:\s+(?:o'?clock|thirty|fifteen|forty[- ]five|\d\d))?"
               r"(?:\s*(?:am|pm))?|noon|midday|midnight|"
               r"tonight|this (?:evening|morning|afternoon)|in the (?:evening|morning|afternoon)|at night|"
               r"(?:the )?day after tomorrow|tomorrow(?: morning| evening| afternoon| night)?|today|"
               r"(?:on |this |next )?(?:" + "|".join(WEEKDAYS) + r")|in (?:a|one|\d+|[a-z]+) (?:days?|weeks?)|"
               r"next week")


def strip_when(text: Any) -> Any:
    """A reminder's text without the when ("call my sister at 6 pm tomorrow" -> "call my sister"):
    the time and day are their own arguments, and a text that kept them would be read out twice."""
    if not isinstance(text, str):
        return text
    out = re.sub(r"(?i)\b([ap])\.\s?m\.?", r"\1m", text)
    out = re.sub(rf"(?i)(?:,?\s*\b(?:{_WHEN_WORDS})\b)+", "", out)
    out = re.sub(r"(?i)\s+(?:at|on|by)\s*$", "", out)
    return " ".join(out.split()).strip(" ,.") or text


#: A tool argument type: a day as "YYYY-MM-DD". The agent fills it from the user's words.
CalendarDay = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\d$", description="day, YYYY-MM-DD")]
#: A tool argument type: free text with the time and day words taken out; the agent takes it from
#: the user's words when they say "remind me ... to <it>" (what_to_do).
WhatText = Annotated[str, BeforeValidator(strip_when)]


_WHAT = re.compile(r"\b(?:remind(?:er)?|don'?t let me forget|do not let me forget)\b.*?\bto\s+(?!me\b)(.+)$", re.I)


def what_to_do(said: str) -> str | None:
    """What a reminder is for, in the user's words: "remind me at noon to call the dentist" ->
    "call the dentist" (None when the words do not say "... to <something>")."""
    m = _WHAT.search(said.strip().rstrip(".!?"))
    return strip_when(m.group(1)) if m else None
