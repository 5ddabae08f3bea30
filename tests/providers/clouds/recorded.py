"""Hand-written cloud responses served through requests_mock, and the log of what was asked.

libcloud's HTTP goes through ``requests``, so a ``requests_mock.Mocker`` entered before the
drivers are built (Azure and Google fetch tokens in their constructors) answers every call. A
``Cloud`` holds the routes and the ordered list of calls with their bodies read at send time
(a streamed file body is read there, so the upload is checked byte for byte).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests_mock


@dataclass
class Call:
    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON, bytes/str as is
    headers: dict[str, str] = field(default_factory=dict)


Responder = Reply | Callable[[Call], Reply]


class Cloud:
    def __init__(self, mocker: requests_mock.Mocker):
        self.mocker = mocker
        self.calls: list[Call] = []

    def route(self, method: str, url: str, *replies: Responder) -> None:
        """Answer ``method`` on URLs matching the regex ``url`` with ``replies`` in turn (the
        last one repeats)."""
        queue = list(replies) or [Reply()]
        pattern = re.compile(url)

        def answer(request: Any, context: Any) -> bytes:
            body = request.body
            if hasattr(body, "read"):
                body = body.read()
            elif (
                body is not None and not isinstance(body, bytes | str) and hasattr(body, "__iter__")
            ):
                body = b"".join(body)
            if isinstance(body, str):
                body = body.encode()
            # requests_mock lower-cases .path and .qs; ARM and GCS names are case-sensitive.
            parts = urlsplit(request.url)
            query = dict(parse_qsl(parts.query))
            headers = dict(request.headers)
            call = Call(
                request.method, request.url, unquote(parts.path), query, headers, body or b""
            )
            self.calls.append(call)
            responder = queue.pop(0) if len(queue) > 1 else queue[0]
            reply = responder(call) if callable(responder) else responder
            context.status_code = reply.status
            context.headers.update(reply.headers)
            if isinstance(reply.body, dict | list):
                context.headers.setdefault("Content-Type", "application/json")
                return json.dumps(reply.body).encode()
            if isinstance(reply.body, str):
                return reply.body.encode()
            return reply.body or b""

        self.mocker.register_uri(method, pattern, content=answer)

    def sequence(self, *, skip: Callable[[Call], bool] = lambda c: False) -> list[str]:
        return [str(c) for c in self.calls if not skip(c)]

    def find(self, method: str, path_part: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and path_part in c.path]


@contextmanager
def recorded() -> Iterator[Cloud]:
    with requests_mock.Mocker(real_http=False) as mocker:
        yield Cloud(mocker)
