"""Text as the checks compare it: words, numbers (digits or words), clock times, word error rate.

Speech and its transcripts write the same thing in different ways ("6 pm", "six p.m.", "18:00";
"391", "three hundred and ninety-one"), so every comparison goes through these normal forms.
The word error rate is a plain word-level edit distance (20 lines, no dependency at run time:
jiwer is a test-only package here).
"""

from __future__ import annotations

import re

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = (("billion", 10**9), ("million", 10**6), ("thousand", 1000))
_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}


def number_words(n: int) -> str:
    """391 -> "three hundred ninety one" (no "and": normal form for comparisons)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    for name, value in _SCALES:
        if n >= value:
            rest = n % value
            return number_words(n // value) + f" {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def _digits_to_words(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    text = re.sub(r"\b(\d{1,2}):00\b", r"\1", text)   # 6:00 -> 6 ("six pm", as said)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", r"\1 \2", text)
    return re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)


def words(text: str, *, spell_numbers: bool = True) -> list[str]:
    """Lower-case words: "p.m." -> "pm", "%" -> "percent", digits spelled out, hyphens split,
    punctuation dropped (apostrophes kept inside words)."""
    t = text.lower().replace("p.m.", "pm").replace("a.m.", "am").replace("%", " percent")
    t = re.sub(r"\b(\d+)\s*(am|pm)\b", r"\1 \2", t)
    if spell_numbers:
        t = _digits_to_words(t)
    t = re.sub(r"[^\w\s']|_", " ", t)
    return [w.strip("'") for w in t.split() if w.strip("'") and w.strip("'") != "and"]


def numbers_in(text: str) -> list[float]:
    """Every number written as digits ("391", "1,234", "3.5") or words ("three hundred and
    ninety-one"), in order."""
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    found = [float(m.group()) for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?", t)]
    total = current = 0
    prev: int | None = None  # value of the previous number word (None: a multiplier or not a number)
    for w in [*re.sub(r"[^a-z\s]", " ", t.replace("-", " ")).split(), "."]:
        value = _WORD_VALUES.get(w)
        if value is not None and prev is not None and (value >= 20 or prev < 20):
            found.append(float(total + current))  # "one two", "five twenty": two numbers
            total = current = 0
        if value is not None:
            current += value
            prev = value
        elif w == "hundred" and prev is not None:
            current = current * 100
            prev = None
        elif w in _MULTIPLIERS and (prev is not None or current):
            total += max(current, 1) * _MULTIPLIERS[w]
            current, prev = 0, None
        elif w == "and" and prev is None and (total or current):
            continue  # "three hundred and ninety-one"
        elif total or current or prev is not None:
            found.append(float(total + current))
            total = current = 0
            prev = None
    return found


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words, on `words()`."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def clock_time(value: object) -> str | None:
    """"18:00", "18:00:00", "6 pm", "6:30 p.m.", "7.30pm" -> "HH:MM"; None if it is not a time
    (a bare "6" is a number, not a time)."""
    if not isinstance(value, str):
        return None
    s = value.lower().strip().replace("p.m.", "pm").replace("a.m.", "am").replace("p. m.", "pm")
    m = re.fullmatch(r"(\d{1,2})(?:[:.](\d{2}))?(?::\d{2})?\s*(am|pm)?", s)
    if not m or (m.group(2) is None and m.group(3) is None):
        return None
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59 or (half and int(m.group(1)) > 12):
        return None
    return f"{hour:02d}:{minute:02d}"


def sentences(text: str) -> list[str]:
    """The reply cut after . ! ? (each keeps its mark, so a question stays recognisable)."""
    return [s.strip() for s in re.findall(r"[^.!?]+[.!?]*", text) if s.strip(" .!?")]
