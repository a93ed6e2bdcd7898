"""Tool calls that are always valid: a GBNF grammar built from the offered tools' JSON schemas.

A round that offers tools may still answer in prose, so by default the grammar is *lazy*
(llama.cpp's `llama_sampler_init_grammar_lazy_patterns`, the mechanism llama.cpp's server uses
for tool calls): tokens are free until the `<tool_call>` token (Qwen2.5 and other Hermes-style
templates write calls inside it), then every further token must keep the text a valid call. A
round whose reply must be a call (GenerationOptions.require_call) gets the grammar *eagerly*, from
the first token: that is also how a bare call without the tag (Qwen2.5-0.5B often writes one) is
constrained.

From the trigger on, the grammar allows only `{"name": <an allowed tool>, "arguments": <that
tool's schema>}`: real tool names, required keys present, enums respected, nested objects typed,
and nothing after the call but `</tool_call>` and the end of the reply. Prose costs nothing extra:
an untriggered grammar checks no tokens.

Why no text-pattern trigger for a bare `{"name": ...`: llama.cpp feeds the trigger *token's* whole
text to the grammar and aborts the process when the grammar rejects it, and a first token "{{" or
"{\n" matched a `{` pattern (measured: "terminate called ... Unexpected empty grammar stack after
accepting piece: {{"). The `<tool_call>` token is exactly the grammar's first literal: safe.
"""

from __future__ import annotations

import json
from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaSampler
from llama_cpp.llama_grammar import LlamaGrammar, SchemaConverter

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
MAX_CALLS = 3  # calls in one reply (parallel calls: "weather in Paris and in Rome")


def call_schema(tools: list[dict[str, Any]], names: list[str] | None = None) -> dict[str, Any]:
    """JSON Schema of one call of any allowed tool. `tools`: OpenAI-style definitions;
    `names`: the tools that may be called (None: all of them)."""
    allowed = [t["function"] for t in tools if names is None or t["function"]["name"] in names]
    if not allowed:
        raise ValueError(f"no tool among {[t['function']['name'] for t in tools]} is allowed ({names})")
    return {"oneOf": [{"type": "object",
                       "properties": {"name": {"const": f["name"]},
                                      "arguments": inline_refs(f.get("parameters") or
                                                               {"type": "object", "properties": {}})},
                       "required": ["name", "arguments"]} for f in allowed]}


def inline_refs(schema: dict[str, Any], depth: int = 8) -> dict[str, Any]:
    """The schema with its local `#/$defs/...` references replaced by their definitions (pydantic
    writes nested models that way; inside the combined call schema those paths would be wrong).
    A model that contains itself is cut off after `depth` levels (any JSON object)."""
    defs = schema.get("$defs", {})

    def visit(node: Any, level: int) -> Any:
        if isinstance(node, list):
            return [visit(x, level) for x in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("pattern"), str):  # llama-cpp-python's converter leaves \d in GBNF, which
            node = {**node, "pattern": _plain_classes(node["pattern"])}  # llama.cpp cannot parse
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref.removeprefix("#/$defs/"))
            if target is None:
                raise ValueError(f"unknown reference {ref}")
            return visit(target, level + 1) if level < depth else {"type": "object"}
        return {k: visit(v, level) for k, v in node.items() if k != "$defs"}

    return visit(schema, 0)


def _plain_classes(pattern: str) -> str:
    return pattern.replace(r"\d", "[0-9]").replace(r"\w", "[A-Za-z0-9_]").replace(r"\s", "[ ]")


def tool_call_grammar(tools: list[dict[str, Any]], names: list[str] | None = None) -> str:
    """GBNF text whose `root` is one to MAX_CALLS tagged calls, or one bare call."""
    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    schema = converter.resolve_refs(json.loads(json.dumps(call_schema(tools, names))), "tools")
    rule = converter.visit(schema, "call")
    tagged = f'"{TOOL_CALL_OPEN}" nl {rule} nl "{TOOL_CALL_CLOSE}"'
    more = " ".join([f"( nl {tagged} )?"] * (MAX_CALLS - 1))
    return (f"root ::= {tagged} {more} | {rule}\n"
            'nl ::= "\\n"?\n'
            + converter.format_grammar())


# ---------------------------------------------------------------- llama.cpp sampling


class LazyGrammar(LlamaGrammar):
    """A grammar that applies from its first trigger on (a token id, or a full-match pattern)."""

    def __init__(self, gbnf: str, *, patterns: list[str], tokens: list[int]):
        super().__init__(_grammar=gbnf)
        self.patterns, self.tokens = patterns, tokens


class LazyGrammarLlama(llama_cpp.Llama):
    """llama_cpp.Llama whose sampler also takes a LazyGrammar (llama-cpp-python builds eager ones
    only). The chain is the library's own, with the lazy grammar first: it masks tokens the call
    cannot continue with before penalties and sampling pick one."""

    def _init_sampler(self, *args: Any, grammar: LlamaGrammar | None = None, **kwargs: Any) -> Any:
        if not isinstance(grammar, LazyGrammar):
            return super()._init_sampler(*args, grammar=grammar, **kwargs)
        sampler = LlamaSampler()
        sampler.add_grammar_lazy_patterns(self._model, grammar, grammar.patterns, grammar.tokens)
        rest = super()._init_sampler(*args, grammar=None, **kwargs)
        assert not rest.custom_samplers, "logits processors are not supported with a lazy grammar"
        while llama_cpp.llama_sampler_chain_n(rest.sampler) > 0:  # move the library's chain behind ours
            llama_cpp.llama_sampler_chain_add(sampler.sampler, llama_cpp.llama_sampler_chain_remove(rest.sampler, 0))
        return sampler

    def tool_call_token(self) -> int | None:
        """The id of the single `<tool_call>` token, if this vocabulary has one."""
        ids = self.tokenize(TOOL_CALL_OPEN.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None


def lazy_tool_grammar(llama: LazyGrammarLlama, tools: list[dict[str, Any]], names: list[str], *,
                      eager: bool = False) -> LlamaGrammar:
    """The grammar for these tools, checked once by llama.cpp's own parser: a grammar it cannot
    parse would make every later sampler NULL (a crash), so that raises ValueError here instead.
    `eager`: applied from the first token (the reply must be a call), else lazily."""
    gbnf = tool_call_grammar(tools, names)
    sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, gbnf.encode(), b"root")
    if not sampler:
        raise ValueError(f"llama.cpp cannot parse the tool-call grammar of {names}")
    llama_cpp.llama_sampler_free(sampler)
    if eager:
        return LlamaGrammar.from_string(gbnf, verbose=False)
    token = llama.tool_call_token()
    if token is None:  # nothing to trigger on: unconstrained (the lenient parser reads the calls)
        raise ValueError("this vocabulary has no <tool_call> token for a lazy grammar")
    return LazyGrammar(gbnf, patterns=[], tokens=[token])
