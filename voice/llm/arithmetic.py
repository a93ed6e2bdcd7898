"""Sums the user asks for, worked out exactly instead of by the model.

Qwen2.5-0.5B answered "what is seventeen times twenty-three?" with another multiplication, and no
model that size multiplies two-digit numbers reliably. The words are read here: numbers written
as digits or words ("twenty-three", "one hundred and five"), operator words (plus, minus, times,
x, multiplied by, divided by, over, percent of, squared, "take away A from B", "subtract A from
B"), "that"/"it" for the previous answer, and the "N boxes of M each, how many" product. A turn
with no complete sum in it is left to the model.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

_UNIT_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
               "sixteen seventeen eighteen nineteen")
UNITS = {w: i for i, w in enumerate(re.findall(r"\w+", _UNIT_WORDS))}
TENS = {w: 10 * i for i, w in enumerate(re.findall(r"\w+", "_ _ twenty thirty forty fifty sixty seventy eighty ninety"))
        if i > 1}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_OPS = (  # spoken operator -> Python operator; longest phrases first
    ("multiplied by", "*"), ("divided by", "/"), ("to the power of", "**"), ("plus", "+"), ("minus", "-"),
    ("times", "*"), ("over", "/"), ("x", "*"), ("×", "*"), ("*", "*"), ("+", "+"), ("/", "/"), ("÷", "/"),
    ("-", "-"), ("and", "+"),
)
_SPOKEN = {"+": "plus", "-": "minus", "*": "times", "/": "divided by", "**": "to the power of"}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_REFERENCE = r"(?:that|it|this|the result|the answer)"
_ASKS = re.compile(r"\b(what|what's|whats|how much|how many|calculate|compute|equals?|is|if)\b|\?|=")


@dataclass(frozen=True)
class Sum:
    spoken: str    # the answer to say: "17 times 23 is 391."
    value: float


def words_to_numbers(text: str) -> str:
    """"seventeen times twenty-three" -> "17 times 23"; digits with thousands commas lose them."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    text = re.sub(rf"\b({'|'.join(TENS)})-({'|'.join(list(UNITS)[1:10])})\b", r"\1 \2", text)  # twenty-three
    out: list[str] = []
    current: int | None = None
    total = 0
    for token in re.findall(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[^\sa-z\d]", text):
        if token in UNITS or token in TENS:
            current = (current or 0) + UNITS.get(token, TENS.get(token, 0))
        elif token in SCALES and (current is not None or total):
            scale = SCALES[token]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * scale, None
        elif token == "and" and ((current or 0) >= 100 or (total and current is None)):
            continue  # "one hundred and five", "two thousand and twenty"
        else:
            if current is not None or total:
                out.append(str(total + (current or 0)))
                current, total = None, 0
            out.append(token)
    if current is not None or total:
        out.append(str(total + (current or 0)))
    return " ".join(out)


def solve(text: str, last: float | None = None) -> Sum | None:
    """The sum the words ask for, or None. `last`: the previous answer ("take thirty from that")."""
    norm = words_to_numbers(text)
    if last is not None:
        norm = re.sub(rf"\b{_REFERENCE}\b", _format(last), norm)
    norm = re.sub(r"\b(?:take away|subtract|take) (\d+(?:\.\d+)?) (?:from|off) (\d+(?:\.\d+)?)", r"\2 - \1", norm)
    norm = re.sub(r"\badd (\d+(?:\.\d+)?) to (\d+(?:\.\d+)?)", r"\2 + \1", norm)
    if not _ASKS.search(text.lower()):
        return None
    found = _special(norm) or _expression(norm) or _each_product(norm)
    if found is None:
        return None
    expression, spoken = found
    try:
        value = _evaluate(ast.parse(expression, mode="eval").body)
    except ZeroDivisionError:
        return Sum("You can't divide by zero.", math.nan)
    except (SyntaxError, ValueError, OverflowError):
        return None
    return Sum(f"{spoken} is {_format(value)}." if spoken else f"That makes {_format(value)}.", value)


def _expression(norm: str) -> tuple[str, str] | None:
    """The longest run NUMBER (OP NUMBER)+ in the words: (Python expression, its spoken form)."""
    ops = "|".join(re.escape(w) for w, _ in _OPS)
    number = r"\d+(?:\.\d+)?"
    best = None
    for m in re.finditer(rf"{number}(?:\s*(?:{ops}|\*\*)\s*{number})+", norm):
        if best is None or len(m.group()) > len(best):
            best = m.group()
    if best is None:
        return None
    parts = re.findall(rf"{number}|\*\*|{ops}", best)
    symbols = [dict(_OPS).get(p, p) if not re.fullmatch(number, p) else p for p in parts]
    if "and" in parts and not any(s in "*/-" for s in symbols if not re.fullmatch(number, s)) \
            and "plus" not in parts and "+" not in parts:
        return None  # "two and three" alone is not a sum anybody asked for
    spoken = " ".join(_SPOKEN.get(s, s) for s in symbols)
    return " ".join(symbols), spoken


def _special(norm: str) -> tuple[str, str] | None:
    """"10 percent of 250", "7 squared": forms that are not NUMBER OP NUMBER."""
    if m := re.search(r"\b(\d+(?:\.\d+)?) (?:percent|%) of (\d+(?:\.\d+)?)", norm):
        return f"{m.group(1)} / 100 * {m.group(2)}", f"{m.group(1)} percent of {m.group(2)}"
    if m := re.search(r"\b(\d+(?:\.\d+)?) (squared|cubed)\b", norm):
        return f"{m.group(1)} ** {2 if m.group(2) == 'squared' else 3}", f"{m.group(1)} {m.group(2)}"
    return None


def _each_product(norm: str) -> tuple[str, str] | None:
    """"12 boxes with 24 eggs each, how many": exactly two numbers, an each/per/every, a how-many."""
    numbers = re.findall(r"\d+(?:\.\d+)?", norm)
    if len(numbers) == 2 and re.search(r"\b(each|per|every|apiece)\b", norm) and \
            re.search(r"\b(how many|how much|total|altogether|in all)\b", norm):
        return f"{numbers[0]} * {numbers[1]}", ""
    return None


def _evaluate(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    raise ValueError(f"not arithmetic: {ast.dump(node)}")


def _format(value: float) -> str:
    """391, 3.5, 0.333 (at most three decimals, no trailing zeros)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")
