"""Retry: a thin wrapper that repeats operations whose ``StoreError`` is ``transient``.

This is the only place imagekit retries store operations; backends only classify their errors
(``translate.py``). Backoff is exponential with full jitter (a random delay between zero and
the exponential bound), so many workers hit by the same outage do not return in lockstep.
Every contract operation is safe to repeat: writes are atomic and idempotent, deletes are
idempotent, reads have no effect.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from imagekit.errors import StoreError
from imagekit.store.backends.base import Backend, ObjectInfo

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all (1 = no retry), delays bounded by ``max_delay``.

    The defaults (5 attempts, 0.5 s doubling, 20 s cap) ride out a throttling burst or a store
    restart of ~30 s in total, and give up before a stuck store wastes a nightly window.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))


class RetryBackend(Backend):
    def __init__(
        self,
        inner: Backend,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.inner = inner
        self.url = inner.url
        self.aligned_writes = inner.aligned_writes
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        for retry in range(self.policy.attempts):
            try:
                return operation()
            except StoreError as exc:
                if not exc.transient or retry + 1 >= self.policy.attempts:
                    raise
                delay = self.policy.delay(retry, self._rng)
                log.warning(
                    "%s failed (attempt %d of %d), retrying in %.1f s: %s",
                    what,
                    retry + 1,
                    self.policy.attempts,
                    delay,
                    exc,
                )
                self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def write(self, name: str, data: bytes) -> None:
        self._call(f"write {name}", lambda: self.inner.write(name, data))

    def write_from(self, name: str, view: memoryview) -> None:
        self._call(f"write {name}", lambda: self.inner.write_from(name, view))

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(f"read {name}", lambda: self.inner.read(name, offset, length))

    def stat(self, name: str) -> ObjectInfo:
        return self._call(f"stat {name}", lambda: self.inner.stat(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Collected whole before yielding, so a retry never yields an object twice.
        return iter(self._call(f"list {prefix}", lambda: [*self.inner.list(prefix)]))

    def delete(self, name: str) -> None:
        self._call(f"delete {name}", lambda: self.inner.delete(name))

    def close(self) -> None:
        self.inner.close()
