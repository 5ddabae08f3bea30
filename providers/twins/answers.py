"""The reply type the twins' metadata services answer with, and the tree walk they share. Pure.

A service is a function ``(Request) -> Reply``; ``server.py`` puts it behind HTTP on the
twin's link-local addresses. Keeping the services pure lets the tests check every rule a guest
depends on (required headers, redirects, recursive listings) without a network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as on the request line
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    host: str = ""  # the local address the guest connected to

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The first value of each query parameter, names lower-cased."""
        parsed = parse_qs(urlsplit(self.target).query, keep_blank_values=True)
        return {k.lower(): v[0] for k, v in parsed.items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain; charset=utf-8"

    @staticmethod
    def json(doc: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return Reply(status, json.dumps(doc).encode(), headers, "application/json")


Service = Callable[[Request], Reply]


def walk(tree: Any, parts: list[str]) -> Any:
    """The node at ``parts`` below ``tree`` (dicts by key, lists by index); KeyError if none."""
    node = tree
    for part in parts:
        if isinstance(node, Mapping):
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(part)
    return node


def listing(node: Any) -> str:
    """A directory's entries, one a line, sub-directories with a trailing slash."""
    items = node.items() if isinstance(node, Mapping) else ((str(i), v) for i, v in enumerate(node))
    return "".join(
        f"{name}/\n" if isinstance(value, Mapping | list) else f"{name}\n" for name, value in items
    )


__all__ = ["Reply", "Request", "Service", "listing", "walk"]
