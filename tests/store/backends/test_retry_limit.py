"""The retry and concurrency-limit wrappers, around an in-memory backend that fails on cue."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagekit.errors import IntegrityError, ObjectNotFound, StoreError
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.backends.limit import LimitBackend
from imagekit.store.backends.retry import RetryBackend, RetryPolicy


class Flaky(Backend):
    """A dict store whose next operations raise the errors queued in ``failures``."""

    url = "memory://test"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.failures: list[StoreError] = []
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def _enter(self) -> None:
        with self.lock:
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.01)  # long enough for other threads to overlap
        with self.lock:
            self.active -= 1

    def write(self, name: str, data: bytes) -> None:
        self._enter()
        self.objects[name] = data

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._enter()
        if name not in self.objects:
            raise ObjectNotFound(f"{name}: no such object")
        data = self.objects[name]
        return data[offset:] if length is None else data[offset : offset + length]

    def stat(self, name: str) -> ObjectInfo:
        return ObjectInfo(name, len(self.read(name)))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._enter()
        for name, data in sorted(self.objects.items()):
            if name.startswith(prefix):
                yield ObjectInfo(name, len(data))

    def delete(self, name: str) -> None:
        self._enter()
        self.objects.pop(name, None)


def _transient() -> StoreError:
    return StoreError("HTTP 503", transient=True)


def test_transient_errors_are_retried_with_growing_jittered_delays() -> None:
    inner = Flaky()
    inner.failures = [_transient(), _transient(), _transient()]
    slept: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0)
    backend = RetryBackend(inner, policy, sleep=slept.append, rng=random.Random(7))

    backend.write("a", b"x")

    assert inner.objects == {"a": b"x"}
    assert inner.calls == 4
    assert len(slept) == 3
    bounds = [1.0, 2.0, 3.0]  # base · 2^retry, capped at max_delay
    assert all(0.0 <= d <= bound for d, bound in zip(slept, bounds, strict=True))
    assert len(set(slept)) == 3  # jittered, not a fixed schedule


def test_gives_up_after_the_last_attempt_with_the_last_error() -> None:
    inner = Flaky()
    last = IntegrityError("transfer cut short", transient=True)
    inner.failures = [_transient(), last, _transient()]
    backend = RetryBackend(inner, RetryPolicy(attempts=2), sleep=lambda _: None)
    with pytest.raises(IntegrityError) as caught:
        backend.read("a")
    assert caught.value is last
    assert inner.calls == 2


@pytest.mark.parametrize(
    "error",
    [ObjectNotFound("gone"), StoreError("credentials refused"), IntegrityError("bad tag")],
)
def test_permanent_errors_are_raised_at_once(error: StoreError) -> None:
    inner = Flaky()
    inner.failures = [error]
    slept: list[float] = []
    backend = RetryBackend(inner, RetryPolicy(attempts=5), sleep=slept.append)
    with pytest.raises(type(error)):
        backend.delete("a")
    assert inner.calls == 1
    assert slept == []


def test_list_is_retried_whole_and_never_yields_twice() -> None:
    inner = Flaky()
    inner.objects = {"data/1": b"1", "data/2": b"22", "other": b""}
    inner.failures = [_transient()]
    backend = RetryBackend(inner, RetryPolicy(attempts=2), sleep=lambda _: None)
    assert [info.name for info in backend.list("data/")] == ["data/1", "data/2"]


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


def test_limit_bounds_concurrent_operations() -> None:
    inner = Flaky()
    backend = LimitBackend(inner, connections=3)
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda i: backend.write(f"o{i}", b"x"), range(30)))
    assert len(inner.objects) == 30
    assert inner.peak == 3  # reached, never passed


def test_limit_does_not_hold_a_slot_for_a_paused_listing() -> None:
    inner = Flaky()
    inner.objects = {"a": b"1", "b": b"2"}
    backend = LimitBackend(inner, connections=1)
    listing = backend.list()
    next(listing)
    backend.write("c", b"3")  # would deadlock if the listing still held the only slot
    assert sorted(inner.objects) == ["a", "b", "c"]
