"""The backend contract (``imagekit/store/backends/base.py``), checked on every backend.

One set of tests, parametrised by the ``store`` fixture over local, S3 (moto_server), Azure
(Azurite), GCS and Swift (stateful HTTP fakes, see conftest.py). Each test opens backends through
``open_backend``, as the repository layer does.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imagekit.errors import ObjectNotFound, StoreError, UsageError
from imagekit.store.backends.base import ObjectInfo
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.registry import open_backend
from imagekit.store.backends.retry import RetryBackend, RetryPolicy

#: The conftest's ``Store`` (conftest modules are not importable under importlib mode).
Store = Any


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def test_write_then_read_whole_and_ranges(store: Store) -> None:
    backend = store.open()
    data = _payload(10_000)
    backend.write("data/ab/pack1", data)

    assert backend.read("data/ab/pack1") == data
    assert backend.read("data/ab/pack1", 100, 50) == data[100:150]
    assert backend.read("data/ab/pack1", 9_000) == data[9_000:]
    assert backend.read("data/ab/pack1", 9_990, 100) == data[9_990:]  # past the end: what exists
    assert backend.read("data/ab/pack1", 20_000, 10) == b""
    assert backend.read("data/ab/pack1", 5, 0) == b""
    assert backend.stat("data/ab/pack1") == ObjectInfo("data/ab/pack1", 10_000)
    assert backend.exists("data/ab/pack1")
    # Every backend's listing carries the storage's timestamp, in unix seconds (locks and prune
    # rely on it; the recorded services answer with a fixed date, so not its value is checked).
    # ``stat`` carries it where the service's HEAD answer does.
    listed = [i for i in backend.list("data/") if i.name == "data/ab/pack1"]
    assert isinstance(listed[0].modified, float) and listed[0].modified > 1e9
    when = backend.stat("data/ab/pack1").modified
    assert when is None or (isinstance(when, float) and when > 1e9)


def test_empty_object(store: Store) -> None:
    backend = store.open()
    backend.write("empty", b"")
    assert backend.read("empty") == b""
    assert backend.stat("empty").size == 0


def test_overwrite_replaces_and_repeat_is_harmless(store: Store) -> None:
    backend = store.open()
    backend.write("config", b"first version, longer than the second")
    backend.write("config", b"second")
    backend.write("config", b"second")
    assert backend.read("config") == b"second"
    assert backend.stat("config").size == 6


def test_missing_object_is_object_not_found(store: Store) -> None:
    backend = store.open()
    with pytest.raises(ObjectNotFound):
        backend.read("nope")
    with pytest.raises(ObjectNotFound):
        backend.read("nope", 10, 10)
    with pytest.raises(ObjectNotFound):
        backend.stat("nope")
    assert not backend.exists("nope")


def test_delete_is_idempotent(store: Store) -> None:
    backend = store.open()
    backend.write("locks/a", b"x")
    backend.delete("locks/a")
    backend.delete("locks/a")
    backend.delete("never-written")
    assert not backend.exists("locks/a")
    assert list(backend.list("locks/")) == []


def test_list_by_prefix(store: Store) -> None:
    backend = store.open()
    names = {"data/aa/1": 1, "data/ab/2": 22, "data/ab/3": 333, "index/1": 4, "config": 5}
    for name, size in names.items():
        backend.write(name, b"z" * size)

    def listed(prefix: str) -> dict[str, int]:
        return {info.name: info.size for info in backend.list(prefix)}

    assert listed("") == names
    assert listed("data/") == {k: v for k, v in names.items() if k.startswith("data/")}
    assert listed("data/ab") == {"data/ab/2": 22, "data/ab/3": 333}
    assert listed("index/") == {"index/1": 4}
    assert listed("nothing/") == {}


def test_names_stay_inside_the_store(store: Store) -> None:
    backend = store.open()
    for bad in ("", "/abs", "../up", "a/../b", "a//b"):
        with pytest.raises(ValueError, match="invalid object name"):
            backend.write(bad, b"x")


def test_large_object_takes_the_multipart_path(store: Store) -> None:
    # S3 parts are 5 MiB (libcloud's fixed part size), Azure blocks 4 MiB: 6 MiB makes two.
    data = _payload(6 * 2**20 + 123, seed=1)
    multipart = store.kind in ("s3", "azure")
    backend = store.open(multipart_threshold=2**20) if multipart else store.open()
    backend.write("data/big", data)

    assert backend.stat("data/big").size == len(data)
    assert backend.read("data/big") == data
    assert backend.read("data/big", 5 * 2**20 - 10, 20) == data[5 * 2**20 - 10 : 5 * 2**20 + 10]
    if multipart:
        assert store.faults is not None
        marker = "uploadId=" if store.kind == "s3" else "comp=block&"
        parts = [url for method, url in store.faults.requests if method == "PUT" and marker in url]
        assert len(parts) == 2


def test_concurrent_writes_from_threads(store: Store) -> None:
    backend = store.open(connections=4)
    jobs = {f"data/{i % 4}/obj{i}": _payload(3000 + i, seed=i) for i in range(24)}

    def write(item: tuple[str, bytes]) -> None:
        backend.write(*item)
        backend.write("shared", b"same bytes from every thread")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(write, jobs.items()))
    with ThreadPoolExecutor(max_workers=6) as pool:
        read = dict(zip(jobs, pool.map(backend.read, jobs), strict=True))

    assert read == jobs
    assert backend.read("shared") == b"same bytes from every thread"
    assert {info.name for info in backend.list("data/")} == set(jobs)


def _http_only(store: Store) -> None:
    if store.faults is None:
        pytest.skip("a directory has no HTTP boundary for faults (see test_retry_limit.py)")


def test_transient_error_is_retried(store: Store) -> None:
    _http_only(store)
    assert store.faults is not None
    slept: list[float] = []
    backend = RetryBackend(store.open(retries=1), RetryPolicy(attempts=3), sleep=slept.append)
    backend.write("warm-up", b"x")  # authenticate first (Swift), so faults hit the operation

    store.faults.inject(503, 2)
    backend.write("data/retried", b"payload")
    assert len(slept) == 2

    store.faults.inject(503, 2)
    assert backend.read("data/retried") == b"payload"
    assert len(slept) == 4


def test_transient_error_gives_up_after_the_last_attempt(store: Store) -> None:
    _http_only(store)
    assert store.faults is not None
    slept: list[float] = []
    backend = RetryBackend(store.open(retries=1), RetryPolicy(attempts=2), sleep=slept.append)
    backend.write("warm-up", b"x")

    store.faults.inject(503, 2)
    with pytest.raises(StoreError) as caught:
        backend.read("warm-up")
    assert caught.value.transient
    assert "503" in str(caught.value)
    assert len(slept) == 1


def test_permanent_error_is_not_retried(store: Store) -> None:
    _http_only(store)
    assert store.faults is not None
    slept: list[float] = []
    backend = RetryBackend(store.open(retries=1), RetryPolicy(attempts=3), sleep=slept.append)
    backend.write("data/x", b"payload")

    store.faults.inject(403)
    before = len(store.faults.requests)
    with pytest.raises(StoreError) as caught:
        backend.read("data/x")
    assert not caught.value.transient
    assert "credentials refused" in str(caught.value)
    assert slept == []
    assert len(store.faults.requests) == before + 1


def test_credentials_never_in_url_or_errors(store: Store) -> None:
    backend = store.open()
    backend.write("data/x", b"payload")
    messages = [backend.url]
    actions: list[Callable[[], object]] = [
        lambda: backend.read("missing"),
        lambda: backend.stat("missing"),
    ]
    for action in actions:
        with pytest.raises(StoreError) as caught:
            action()
        messages.append(str(caught.value))
    if store.faults is not None:
        for status in (403, 500):
            store.faults.inject(status, 10)
            with pytest.raises(StoreError) as caught:
                store.open(retries=1).read("data/x")
            messages.append(str(caught.value))
            store.faults.pending.clear()
    for message in messages:
        for secret in store.secrets:
            assert secret not in message
    assert all(secret not in repr(store.credentials) for secret in store.secrets)


def test_unknown_option_is_a_usage_error(store: Store) -> None:
    with pytest.raises(UsageError, match="unknown option 'colour'"):
        store.open(colour="blue")


def test_store_prefixes_do_not_see_each_other(store: Store) -> None:
    if store.kind == "local":
        pytest.skip("a local store is a directory: nothing shares it")
    one = store.open()
    other_url = store.url.replace("/repo", "/other", 1)
    other = open_backend(other_url, store.credentials)
    one.write("data/1", b"one")
    other.write("data/1", b"other")
    assert one.read("data/1") == b"one"
    assert [info.name for info in other.list("")] == ["data/1"]
    other.close()


def test_gcs_endpoint_option_reaches_another_host(gcs_emulator: str) -> None:
    # libcloud's GoogleStorageDriver mis-forwards host/port; the backend works around it.
    backend = open_backend(
        f"gs://imagekit-conformance/p?endpoint={gcs_emulator}",
        Credentials("GOOGTESTKEYID0123456789", "secret-value"),
    )
    backend.write("a", b"via the emulator")
    assert backend.read("a", 4, 3) == b"the"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://host/path", "unknown store scheme 'ftp'"),
        ("s3://", r"expected s3://CONTAINER\[/PREFIX\]"),
        ("s3://bucket:9000/p", r"expected s3://CONTAINER\[/PREFIX\]"),
        ("s3://bucket/p?region=us-east-1&region=eu-west-1", "given twice"),
        ("azure://ctr/p?multipart_threshold=big", "not a valid value"),
        ("s3://bucket/p?endpoint=ftp://x", "endpoint must look like"),
        ("gs://bucket/p#frag", "no '#fragment'"),
        ("file://otherhost/path", "names a local path"),
        ("file:///tmp/x?retries=0", "at least 1"),
        ("", "empty store URL"),
    ],
)
def test_bad_url_is_a_usage_error(url: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEKIT_S3_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("IMAGEKIT_S3_SECRET_ACCESS_KEY", "secret-example")
    with pytest.raises(UsageError, match=expected):
        open_backend(url)


def test_credentials_in_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(UsageError) as caught:
        open_backend("s3://AKIDEXAMPLE:wJalrXUtnFEMI@bucket/prefix")
    assert "credentials" in str(caught.value)
    assert "wJalrXUtnFEMI" not in str(caught.value)
    assert "AKIDEXAMPLE" not in str(caught.value)


def test_local_write_leaves_no_partial_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    backend = open_backend(str(root))
    backend.write("data/x", b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("imagekit.store.backends.local.os.fsync", failing_fsync)
    with pytest.raises(StoreError, match="Input/output error"):
        backend.write("data/x", b"new")
    monkeypatch.undo()
    assert backend.read("data/x") == b"old"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["x"]
