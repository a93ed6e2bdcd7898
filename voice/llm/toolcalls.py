"""Tool calls as small models really write them, and tool results in a form they understand.

Offering: tools go to the engine as OpenAI-style definitions (`GenerationOptions.tools`) and the
GGUF's own chat template renders them (Qwen2.5: a `<tools>` block in the system prompt).
llama.cpp does not parse the reply, so calls arrive as text, in any of these forms
(shared/notes/models.md §2):

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    ```json
    {"name": "get_weather", "parameters": {"city": "Paris"}}
    ```

`parse_reply` finds them with a JSON decoder (never eval); malformed JSON gets one repair attempt
(Python literals, single quotes, trailing commas, missing closing brackets).

Speaking: `SpeechGate` decides while the reply streams. Prose goes to TTS at once; a reply that
starts with `{`, `[{`, a code fence or `<tool_call>` is held until the end and classified, and
prose that runs into one of those stops being spoken at the marker. Speaking JSON aloud is a bug.

What happens with a call's outcome (and why not a role "tool" message) is in replies.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

HOLD_PREFIXES = ("<tool_call>", "```", "{", "[{")
_MARKERS = ("<tool_call>", "```", '{"', "{'", "[{")
_NAME_KEYS = ("name", "tool", "function_name")
_ARG_KEYS = ("arguments", "parameters", "args", "input")


# ---------------------------------------------------------------- streaming


class SpeechGate:
    """Per reply: which streamed text may be spoken now. Feed deltas, speak what `feed` returns,
    then `finish()` gives (prose tail to speak, held text to parse)."""

    def __init__(self) -> None:
        self._text = ""
        self._spoken = 0        # chars of _text released for speech
        self._hold_from: int | None = None

    def feed(self, delta: str) -> str:
        self._text += delta
        if self._hold_from is not None:
            return ""
        rest = self._text[self._spoken:]
        if self._spoken == 0 or not self._text[:self._spoken].strip():
            head = rest.lstrip()
            if not head:
                return ""
            if head.startswith(HOLD_PREFIXES):
                self._hold_from = self._spoken
                return ""
            if any(p.startswith(head) for p in HOLD_PREFIXES):
                return ""  # "<tool", "``", "[": undecided until the next delta
        hits = [i for i in (rest.find(m) for m in _MARKERS) if i >= 0]
        if hits:
            self._hold_from = self._spoken + min(hits)
            return self._release(self._hold_from)
        keep = max((k for m in _MARKERS for k in range(1, len(m)) if rest.endswith(m[:k])), default=0)
        return self._release(len(self._text) - keep)

    def _release(self, upto: int) -> str:
        out = self._text[self._spoken:upto]
        self._spoken = max(self._spoken, upto)
        return out

    def finish(self) -> tuple[str, str]:
        """(unspoken prose tail, held text). Held text is everything from the first marker on."""
        if self._hold_from is None:
            return self._release(len(self._text)), ""
        return "", self._text[self._hold_from:]

    @property
    def text(self) -> str:
        return self._text

    @property
    def held(self) -> str:
        """What is held back so far (a call being written), "" if nothing."""
        return "" if self._hold_from is None else self._text[self._hold_from:]


# ---------------------------------------------------------------- parsing


@dataclass
class ParsedReply:
    """Calls found in a reply (name + raw arguments, not yet validated), and the prose around them."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prose: str = ""
    errors: list[str] = field(default_factory=list)
    repaired: bool = False


def repair_json(text: str) -> str:
    """One best-effort fix of the JSON mistakes small models make; the result may still be invalid."""
    s = text.strip()
    s = re.sub(r"\bTrue\b", "true", s)
    s = re.sub(r"\bFalse\b", "false", s)
    s = re.sub(r"\bNone\b", "null", s)
    if "'" in s and '"' not in s:
        s = s.replace("'", '"')
    s = re.sub(r",\s*([}\]])", r"\1", s)
    stack: list[str] = []
    in_string = escaped = False
    for ch in s:
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    if in_string:
        s += '"'
    return s + "".join(reversed(stack))


def _as_call(obj: Any) -> tuple[str, dict[str, Any]] | None:
    """{"name", "arguments"} and its common variants -> (name, arguments); None if not a call."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if not name:
        return None
    args: Any = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            args = json.loads(repair_json(args)) if _decodes(repair_json(args)) else {"_raw": args}
    if not isinstance(args, dict):
        args = {}
    return name.strip(), args


def _decodes(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _decode_at(text: str, start: int, reply: ParsedReply) -> tuple[Any, int] | None:
    """Decode the JSON value at `start`; on failure repair the rest of the text once."""
    decoder = json.JSONDecoder()
    try:
        value, end = decoder.raw_decode(text, start)
        return value, end
    except json.JSONDecodeError as e:
        error = str(e)
    chunk = text[start:]
    closing = chunk.find("</tool_call>")
    candidate = repair_json(chunk if closing < 0 else chunk[:closing])
    try:
        value, _ = decoder.raw_decode(candidate)
    except json.JSONDecodeError:
        reply.errors.append(f"not valid JSON: {error}")
        return None
    reply.repaired = True
    return value, len(text) if closing < 0 else start + closing


def parse_reply(text: str) -> ParsedReply:
    """Find every tool call in `text`; what is left outside calls, fences and tags is prose."""
    reply = ParsedReply()
    prose: list[str] = []
    body = re.sub(r"```(?:json|tool_call|python)?", " ", text)
    body = body.replace("<tool_call>", " ").replace("</tool_call>", " ")
    i = 0
    while i < len(body):
        j = min((k for k in (body.find("{", i), body.find("[", i)) if k >= 0), default=-1)
        if j < 0:
            prose.append(body[i:])
            break
        prose.append(body[i:j])
        decoded = _decode_at(body, j, reply)
        if decoded is None:
            if body[j] == "[":
                prose.append("[")
                i = j + 1
                continue
            break  # undecodable even after repair: the rest is not prose either
        value, end = decoded
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item)
            if call is not None:
                reply.calls.append(call)
        i = end
    reply.prose = " ".join(" ".join(prose).split())
    return reply


def looks_like_code(text: str) -> bool:
    """Prose left around a held block that is still code (def, import, braces): never spoken."""
    return bool(re.search(r"\b(def|import|return|print)\b.*[(:]|[{};]", text))


_NAME = re.compile(r'"(?:name|tool|function_name)"\s*:\s*"([^"]+)"')


def called_name(held: str) -> str | None:
    """The tool name in a call still being written, once its closing quote has arrived."""
    m = _NAME.search(held)
    return m.group(1) if m else None
