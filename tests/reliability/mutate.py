"""Hypothesis strategies for hostile input: valid encodings mutated, and arbitrary JSON.

Random bytes alone rarely get past a parser's first length check; a valid object with one
mutation (a bit flipped, a cut, a splice, a field replaced) reaches the deep branches, where
the unhandled exceptions live.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: JSON values of any shape, including the ones parsers do not expect (lists, huge numbers,
#: nulls, nested objects).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with one to three byte-level mutations."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "replace", "set_u32", "drop"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "replace":
            width = draw(st.integers(1, 8))
            data[at : at + width] = draw(st.binary(min_size=width, max_size=width))
        elif kind == "set_u32":
            # Length and count fields are little-endian u32: the extremes are the bugs.
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), len(data) + 1]))
            data[at : at + 4] = value.to_bytes(4, "little")
        elif kind == "drop" and data:
            width = draw(st.integers(1, 16))
            del data[at : at + width]
    return bytes(data)


@st.composite
def json_field_swapped(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """``doc`` with one field (possibly nested one level) replaced by any JSON value, or
    removed, serialised."""
    out = json.loads(json.dumps(doc))
    target = out
    key = draw(st.sampled_from(sorted(out)))
    if isinstance(out[key], dict) and out[key] and draw(st.booleans()):
        target = out[key]
        key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        target[key] = draw(json_values)
    else:
        del target[key]
    return json.dumps(out).encode()


hostile_json: st.SearchStrategy[bytes] = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.sampled_from([b"1e400", b"-1e400", b'{"a": 1e400}', b"NaN", b"\xff\xfe", b""]),
)

__all__ = ["hostile_json", "json_field_swapped", "json_values", "mutated"]
