"""JSON documents read from places others can write: the bucket (config, key slots), an identity
file, a writer's manifests and locks. Pure.

``json.loads`` raises more than ``ValueError`` on hostile input: ``RecursionError`` for deeply
nested arrays (a 64 KiB lock of ``[`` is enough), and the values it returns need not be what the
reader indexes into (a list has no ``.get``; ``1e400`` is a float ``int()`` cannot convert). The
readers promise ``ValueError`` for anything malformed (their callers turn it into a warning or an
``IntegrityError`` naming the object), so every such document goes through here.
"""

from __future__ import annotations

import json
from typing import Any


def load_object(data: bytes | str, what: str) -> dict[str, Any]:
    """The JSON object in ``data`` (UTF-8); ``ValueError`` naming ``what`` for anything else."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        doc = json.loads(text)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{what} is not a JSON document ({type(exc).__name__})") from exc
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not a JSON object")
    return doc


def member(doc: Any, key: str, what: str) -> Any:
    """``doc[key]``; ``ValueError`` when ``doc`` is not an object or lacks the key."""
    if not isinstance(doc, dict) or key not in doc:
        raise ValueError(f"{what}: missing {key!r}")
    return doc[key]


def integer(value: Any, what: str) -> int:
    """An integer as JSON writes one (not a bool, a float or a string)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} is not an integer: {value!r:.40}")
    return value


def number(value: Any, what: str) -> float:
    """A finite JSON number (``1e400`` parses as infinity)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise ValueError(f"{what} is not a number: {value!r:.40}")
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{what} is not finite")
    return float(value)


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string: {value!r:.40}")
    return value


__all__ = ["integer", "load_object", "member", "number", "text"]
