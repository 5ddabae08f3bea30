"""Fixtures of the recorded-HTTP cloud tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 standing in for a node's guest port: the recorded clouds give
    each node the address 127.0.0.1, so ``tcp:`` checks make a real connection here."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield int(sock.getsockname()[1])
