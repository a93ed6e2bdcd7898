"""Hypothesis strategies for JSON a hostile or broken peer sends: any shape, deep nesting, huge
numbers, non-finite floats, lone surrogates, keys of the wrong type where a model expects one.
Shared by the property tests of every JSON wire format (our protocol, Twilio)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: Any code point, lone surrogates (category Cs) included: the ones json.loads hands back from "\ud800".
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), any_text,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def deeply_nested(draw) -> Any:
    """A value nested 20..800 levels deep, in lists or objects (json.dumps still writes it)."""
    depth = draw(st.integers(20, 800))
    value: Any = draw(scalars)
    for _ in range(depth):
        value = [value] if draw(st.booleans()) else {"k": value}
    return value


def shaped_like(template: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that are `template` with any of its keys dropped, kept, or given any JSON value
    (nested objects recursively), plus extra keys: the wrong-shape inputs a parser meets."""

    def field(value: Any) -> st.SearchStrategy[Any]:
        options = [st.just(value), json_values, deeply_nested()]
        if isinstance(value, dict):
            options.append(shaped_like(value))
        return st.one_of(options)

    return st.fixed_dictionaries(
        {}, optional={key: field(value) for key, value in template.items()},
    ).flatmap(lambda d: st.dictionaries(any_text, json_values, max_size=2).map(lambda extra: {**extra, **d}))


def dumps_any(value: Any, ascii_only: bool) -> bytes:
    """JSON text as a peer would send it: NaN/Infinity and escaped surrogates are written as
    Python's encoder writes them; unencodable (surrogate) text becomes an invalid UTF-8 sequence."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def deeply_nested_text(draw) -> bytes:
    """JSON text nested up to 5,000 levels: past what json.loads can recurse through."""
    depth = draw(st.integers(30, 5000))
    opener = draw(st.sampled_from(["[", '{"k":']))
    closer = "]" if opener == "[" else "}"
    return (opener * depth + "0" + closer * depth).encode()
