"""JSON from peers, with the limits Python's json module lacks.

Three ways valid-looking JSON hurts a server that parses it with `json.loads`:
- depth: the decoder recurses once per nesting level, so ~1,000 brackets (a 2 KB frame) raise
  RecursionError, and anything that walks or re-encodes a deep value later can too;
- numbers: `1e400` reads as inf, which no JSON encoder writes back (READY echoes options);
- unicode: an escaped lone surrogate (`"\\ud800"`) reads as a str that cannot be encoded as UTF-8,
  so the first log line, reply or READY that carries it raises UnicodeEncodeError.
`load_json` refuses all three before any of that code sees the value. Every wire format that
carries JSON (our protocol's HELLO/CONTROL/EVENT, Twilio Media Streams) parses through it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Deepest nesting accepted. Our messages need 3 levels; options a client invents get room.
MAX_JSON_DEPTH = 32

# A JSON string, or an unterminated one running to the end of the text. Possessive, and it
# always matches once it has its opening quote, so the scan is linear on any input (a plain
# `"(?:[^"\\]|\\.)*"` backtracks quadratically over many escaped quotes with no closing one).
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:\\\Z)?(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")


class JsonSyntaxError(ValueError):
    """Not JSON we read: bad syntax, not UTF-8, nested too deep, a number out of range."""


class JsonUnicodeError(ValueError):
    """JSON whose strings hold a lone surrogate (an escaped `\\ud800`-`\\udfff` without its pair)."""


def load_json(data: str | bytes | bytearray | memoryview, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse one JSON text. Raises JsonSyntaxError or JsonUnicodeError, nothing else."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonSyntaxError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    if not depth_within(text, max_depth):
        raise JsonSyntaxError(f"unbalanced, or nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # unreachable after depth_within; kept so nothing else can escape
        raise JsonSyntaxError(f"nested deeper than {max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError, and our parse hooks, and int() over 4300 digits
        raise JsonSyntaxError(str(e)) from None
    if "\\u" in text and not _encodable(value):
        raise JsonUnicodeError("invalid unicode: a string holds a lone surrogate")
    return value


def depth_within(text: str, max_depth: int) -> bool:
    """True when the brackets outside strings nest at most `max_depth` deep and balance.

    C-speed regex passes only, so a 64 KB frame of brackets costs microseconds, not a Python
    loop per character: strings are cut out, then each pass removes the innermost `[]`/`{}`
    pairs; whatever is left after `max_depth` passes is deeper (or unbalanced).
    """
    if text.count("[") + text.count("{") <= max_depth:
        return True  # too few brackets to be deeper; balance is json.loads' business
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        brackets, removed = _EMPTY_PAIR.subn("", brackets)
        if not brackets:
            return True
        if not removed:
            return False
    return not brackets


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value
