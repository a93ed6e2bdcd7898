"""Written text -> the words a TTS should say: `speakable(text)`.

One place for it, applied to each piece just before synthesis, while the text shown to clients and
kept in the history stays as written ("21°C" on screen, "twenty-one degrees Celsius" in the ear).
Why not leave it to the voice: Piper's espeak front end reads "18:00" as "eighteen zero zero",
"$5.50" as "dollar five point five zero", "2026-12-05" digit group by digit group, and a
codec-token TTS (Orpheus, OuteTTS) reads whatever its training made of symbols.

Handled, in this order (each step sees the output of the one before): markdown and list bullets,
URLs and e-mail addresses, currency, ISO dates and "Dec 5", clock times ("18:00", "6:30 pm"),
units and percentages (°C, km, kg, %, ...), ordinals ("21st"), years after "in/since/..."
("in 1990"), phone-like digit groups, plain numbers (with thousands commas, decimals, signs),
abbreviations (Dr., e.g., etc.) and symbols (&, +, =, @, #). Number words come from num2words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

from voice.tts.chunker import clean_markdown

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_ABBR = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
              "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "", "")}
UNITS = {  # symbol -> (singular, plural); matched after a number only
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "%": ("percent", "percent"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"), "km": ("kilometer", "kilometers"), "kg": ("kilogram", "kilograms"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"), "ml": ("milliliter", "milliliters"),
    "mg": ("milligram", "milligrams"), "g": ("gram", "grams"), "lb": ("pound", "pounds"),
    "lbs": ("pounds", "pounds"), "ft": ("foot", "feet"), "mi": ("mile", "miles"), "kWh": ("kilowatt hour",
                                                                                          "kilowatt hours"),
    "GB": ("gigabyte", "gigabytes"), "MB": ("megabyte", "megabytes"), "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"), "h": ("hour", "hours"), "s": ("second", "seconds"), "m": ("meter", "meters"),
    "l": ("liter", "liters"), "L": ("liter", "liters"),
}
ABBREVIATIONS = {
    "e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "approximately",
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Dr.": "Doctor", "Prof.": "Professor", "Jr.": "Junior",
    "Sr.": "Senior", "No.": "number", "Ave.": "Avenue", "Blvd.": "Boulevard", "Mt.": "Mount", "a.m.": "a m",
    "p.m.": "p m",
}
SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ", "~": " about ",
           "→": " to ", "×": " times ", "÷": " divided by "}
NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_YEAR_CUES = r"(?:in|since|from|until|till|by|of|year|around|before|after)"


def speakable(text: str) -> str:
    """`text` as words a TTS reads correctly; see the module docstring for what is converted."""
    out = _unlist(text)
    for step in _STEPS:
        out = step(out)
    return " ".join(out.split())


def cardinal(number: str) -> str:
    """"1,250" -> "one thousand, two hundred and fifty"; "-3.5" -> "minus three point five"."""
    value = number.replace(",", "")
    if "." in value:  # digit by digit after the point, as people read them: "3.05" -> "three point zero five"
        whole, _, decimals = value.partition(".")
        return f"{num2words(int(whole))} point {' '.join(num2words(int(d)) for d in decimals)}"
    return num2words(int(value))


def _unlist(text: str) -> str:
    """Markdown off; each list item or line its own sentence (so the voice pauses between them)."""
    lines = [clean_markdown(line) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return " ".join(line if line[-1] in ".!?:;," else line + "." for line in lines) if len(lines) > 1 \
        else (lines[0] if lines else "")


def _urls_and_emails(text: str) -> str:
    def spell(address: str) -> str:
        address = re.sub(r"^(?:https?://)?(?:www\.)?", "", address).rstrip("/")
        return (address.replace(".", " dot ").replace("@", " at ").replace("/", " slash ")
                .replace("-", " dash ").replace("_", " underscore "))
    text = re.sub(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", lambda m: spell(m.group()), text)
    return re.sub(r"\b(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|org|net|io|dev|ai|co\.uk|de|fr)\b(?:/\S*)?",
                  lambda m: spell(m.group().rstrip(".,;")) + m.group()[len(m.group().rstrip(".,;")):], text)


def _currency(text: str) -> str:
    def say(m: re.Match[str]) -> str:
        one, many, sub_one, sub_many = CURRENCIES[m.group(1)]
        amount, scale = m.group(2).replace(",", ""), m.group(3)
        if scale:
            return f"{cardinal(amount)} {scale} {many}"
        whole, _, cents = amount.partition(".")
        words = f"{cardinal(whole)} {one if whole == '1' else many}"
        if cents and int(cents.ljust(2, "0")[:2]) and sub_many:
            c = int(cents.ljust(2, "0")[:2])
            words += f" {cardinal(str(c))} {sub_one if c == 1 else sub_many}"
        return words
    return re.sub(r"([$€£¥])\s?(\d+(?:,\d{3})*(?:\.\d+)?)(?:\s?(million|billion|thousand))?\b", say, text)


def _dates(text: str) -> str:
    def iso(m: re.Match[str]) -> str:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return m.group()
        return f"{MONTHS[month - 1]} {num2words(day, to='ordinal')}, {num2words(year, to='year')}"

    def named(m: re.Match[str]) -> str:
        month = _MONTH_ABBR.get(m.group(1).lower()[:4].rstrip("."), None) or _MONTH_ABBR.get(m.group(1).lower()[:3])
        return f"{month} {num2words(int(m.group(2)), to='ordinal')}"
    text = re.sub(r"\b(\d{4})-(\d\d)-(\d\d)\b", iso, text)
    months = "|".join(m[:3] for m in MONTHS)
    return re.sub(rf"\b((?:{months})[a-z]*\.?)\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", named, text)


def _times(text: str) -> str:
    def clock(hour: int, minute: int, half: str | None) -> str:
        if half is None:  # 24-hour time
            half = "a m" if hour < 12 else "p m"
            if (hour, minute) == (12, 0):
                return "twelve noon"
            if (hour, minute) == (0, 0):
                return "midnight"
            hour = hour % 12 or 12
        words = num2words(hour)
        if minute:
            words += " oh " + num2words(minute) if minute < 10 else " " + num2words(minute)
        return f"{words} {half}"

    def with_half(m: re.Match[str]) -> str:
        return clock(int(m.group(1)), int(m.group(2) or 0), "a m" if m.group(3).lower().startswith("a") else "p m")

    def bare(m: re.Match[str]) -> str:
        hour, minute = int(m.group(1)), int(m.group(2))
        return clock(hour, minute, None) if hour < 24 and minute < 60 else m.group()
    # "a.m." keeps its last dot when it ends the sentence ("at 7 a.m. Then" / "at 7 a.m.")
    text = re.sub(r"\b(\d{1,2})(?::(\d\d))?\s?([ap])\.?\s?m\b(?:\.(?=\s+[a-z]))?", with_half, text, flags=re.I)
    return re.sub(r"\b(\d{1,2}):(\d\d)\b", bare, text)


def _units(text: str) -> str:
    symbols = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))

    def say(m: re.Match[str]) -> str:
        number, unit = m.group(1), m.group(2)
        one, many = UNITS[unit]
        return f"{cardinal(number)} {one if number in ('1', '-1') else many}"
    return re.sub(rf"({NUMBER})\s?({symbols})(?![\w/])", say, text)


def _ordinals(text: str) -> str:
    return re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: num2words(int(m.group(1)), to="ordinal"), text)


def _years(text: str) -> str:
    return re.sub(rf"\b({_YEAR_CUES}) (1[1-9]\d\d|20\d\d)\b(?![,.]\d)",
                  lambda m: f"{m.group(1)} {num2words(int(m.group(2)), to='year')}", text, flags=re.I)


def _digit_groups(text: str) -> str:
    """Phone numbers and codes ("555-1234", "+1 415 555 0100") are read digit by digit."""
    def spell(m: re.Match[str]) -> str:
        groups = re.findall(r"\d+", m.group())
        return ", ".join(" ".join(num2words(int(d)) for d in g) for g in groups)
    return re.sub(r"(?<![\w.,])\+?\d{1,4}(?:[ -]\d{2,4}){2,}(?!\w|[.,]\d)|\b\d{3}-\d{4}\b", spell, text)


def _numbers(text: str) -> str:
    text = re.sub(r"(?<=\d)\s?[-–]\s?(?=\d)", " to ", text)  # "5-10", "5–10": a range
    return re.sub(rf"(?<![\w.]){NUMBER}(?![\w])", lambda m: cardinal(m.group()), text)


def _abbreviations(text: str) -> str:
    for short, long in ABBREVIATIONS.items():
        text = re.sub(rf"(?<![\w.]){re.escape(short)}(?=\s|$|,)", long, text)
    text = re.sub(r"\bSt\.(?=\s+[A-Z])", "Saint", text)
    text = re.sub(r"(?<=[a-z] )St\.", "Street", text)
    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    return text


_STEPS: tuple[Callable[[str], str], ...] = (_urls_and_emails, _currency, _dates, _times, _units, _ordinals,
                                           _years, _digit_groups, _numbers, _abbreviations)
