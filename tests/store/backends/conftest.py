"""Fixtures of the backend conformance suite: one ``store`` per backend family.

- local: a temporary directory.
- s3: a stock moto_server on loopback (``testbed/moto_s3.py``), one per test session.
- azure: Azurite on loopback (``testbed/azurite.py``), one per test session.
- gcs, swift: small stateful fakes at the HTTP boundary (requests_mock matchers), hand-written
  from the API documentation, not recorded: the GCS XML API (the S3-compatible dialect libcloud's
  ``GoogleStorageDriver`` speaks: ``/bucket/object`` paths, ``ListBucketResult`` in the
  2006-03-01 namespace, ``Range`` → 206/416, ``x-goog-hash: md5=`` checked → 400 BadDigest), and
  the OpenStack Object Storage API v1 (JSON listings, ``ETag`` checked → 422) behind Keystone
  Identity API v3 (``POST /v3/auth/tokens`` → ``X-Subject-Token`` and a service catalog).
  Listings page two objects at a time, so the drivers' marker pagination is exercised.

Every HTTP-backed store passes through ``Faults`` first: ``store.faults.inject(503, 2)`` makes
the next two requests fail with that status before they reach the server; it also records
every request (method, URL) so tests can see which upload path ran.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

import pytest
import requests_mock
from libcloud.storage.drivers.azure_blobs import AzureBlobsStorageDriver

from imagekit.store.backends.base import Backend
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.registry import open_backend
from testbed.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from testbed.moto_s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3

BUCKET = "imagekit-conformance"

#: Objects per listing page in the fakes: small, so pagination happens in every list test.
PAGE = 2

GCS_HOST = "storage.googleapis.com"
GCS_KEY_ID = "GOOGTESTKEYID0123456789"  # HMAC ids start with GOOG (libcloud picks auth by it)
GCS_SECRET = "gcs-secret-value-for-tests"

KEYSTONE = "http://keystone.test:5000"
SWIFT_HOST = "swift.test"
SWIFT_ACCOUNT_PATH = "/v1/AUTH_demo"
SWIFT_USER = "demo-user"
SWIFT_PASSWORD = "swift-password-for-tests"


def _response(
    request: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> Any:
    return requests_mock.create_response(
        request, status_code=status, content=body, headers=headers or {}
    )


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _range(request: Any, data: bytes) -> Any:
    """200 whole, 206 for a satisfiable ``Range: bytes=a-[b]``, 416 past the end."""
    spec = request.headers.get("Range") or request.headers.get("x-ms-range")
    if not spec:
        return _response(request, 200, data, headers={"Content-Length": str(len(data))})
    first, _, last = spec.removeprefix("bytes=").partition("-")
    start = int(first)
    end = min(int(last), len(data) - 1) if last else len(data) - 1
    if start >= len(data):
        return _response(request, 416)
    body = data[start : end + 1]
    return _response(
        request,
        206,
        body,
        headers={
            "Content-Range": f"bytes {start}-{end}/{len(data)}",
            "Content-Length": str(len(body)),
        },
    )


class Faults:
    """Injected failures, ahead of every server; and a log of every request made."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def inject(self, status: int, count: int = 1) -> None:
        with self.lock:
            self.pending.extend([status] * count)

    def __call__(self, request: Any) -> Any:
        with self.lock:
            self.requests.append((request.method, request.url))
            if self.pending:
                return _response(request, self.pending.pop(0))
        return None


class FakeGCS:
    """Buckets of objects behind the GCS XML API (HMAC-signed requests only)."""

    def __init__(self, host: str = GCS_HOST) -> None:
        self.host = host
        self.buckets: dict[str, dict[str, bytes]] = {BUCKET: {}}
        self.lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        url = urlsplit(request.url)
        if url.hostname != self.host:
            return None
        if not request.headers.get("Authorization", "").startswith(f"GOOG1 {GCS_KEY_ID}:"):
            return _response(request, 403, b"<Error><Code>AccessDenied</Code></Error>")
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        with self.lock:
            objects = self.buckets.get(bucket)
            if objects is None:
                return _response(request, 404, b"<Error><Code>NoSuchBucket</Code></Error>")
            if not key:
                return self._bucket(request, bucket, objects, query)
            return self._object(request, objects, key)

    def _bucket(
        self, request: Any, bucket: str, objects: dict[str, bytes], query: dict[str, str]
    ) -> Any:
        if request.method == "HEAD":
            return _response(request, 200)
        prefix, marker = query.get("prefix", ""), query.get("marker", "")
        keys = sorted(k for k in objects if k.startswith(prefix) and k > marker)
        page, truncated = keys[:PAGE], len(keys) > PAGE
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>2024-01-01T00:00:00.000Z"
            f'</LastModified><ETag>"{_md5(objects[k]).hex()}"</ETag>'
            f"<Size>{len(objects[k])}</Size></Contents>"
            for k in page
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01">'
            f"<Name>{bucket}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{contents}"
            "</ListBucketResult>"
        )
        return _response(request, 200, body.encode(), headers={"Content-Type": "application/xml"})

    def _object(self, request: Any, objects: dict[str, bytes], key: str) -> Any:
        data = objects.get(key)
        if request.method == "PUT":
            body = request.body or b""
            expected = "md5=" + base64.b64encode(_md5(body)).decode()
            if request.headers.get("x-goog-hash") != expected:
                return _response(request, 400, b"<Error><Code>BadDigest</Code></Error>")
            objects[key] = body
            return _response(request, 200, headers={"ETag": f'"{_md5(body).hex()}"'})
        if data is None:
            return _response(request, 404, b"<Error><Code>NoSuchKey</Code></Error>")
        if request.method == "HEAD":
            return _response(
                request,
                200,
                b"",
                headers={"Content-Length": str(len(data)), "ETag": f'"{_md5(data).hex()}"'},
            )
        if request.method == "DELETE":
            del objects[key]
            return _response(request, 204)
        return _range(request, data)


class FakeSwift:
    """One Swift account behind Keystone v3 password authentication."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, bytes]] = {BUCKET: {}}
        self.tokens: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        url = urlsplit(request.url)
        if f"{url.scheme}://{url.netloc}" == KEYSTONE and url.path == "/v3/auth/tokens":
            return self._authenticate(request)
        if url.hostname != SWIFT_HOST:
            return None
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return _response(request, 401)
        path = unquote(url.path).removeprefix(SWIFT_ACCOUNT_PATH + "/")
        container, _, key = path.partition("/")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        with self.lock:
            objects = self.containers.get(container)
            if objects is None:
                return _response(request, 404)
            if not key:
                return self._container(request, objects, query)
            return self._object(request, objects, key)

    def _authenticate(self, request: Any) -> Any:
        auth = json.loads(request.body)["auth"]["identity"]["password"]["user"]
        if auth["name"] != SWIFT_USER or auth["password"] != SWIFT_PASSWORD:
            return _response(request, 401)
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
        endpoint = {
            "interface": "public",
            "region": "RegionOne",
            "url": f"http://{SWIFT_HOST}{SWIFT_ACCOUNT_PATH}",
        }
        body = {
            "token": {
                "expires_at": "2099-01-01T00:00:00.000000Z",
                "roles": [],
                "catalog": [{"type": "object-store", "name": "swift", "endpoints": [endpoint]}],
            }
        }
        return _response(
            request,
            201,
            json.dumps(body).encode(),
            headers={"X-Subject-Token": token, "Content-Type": "application/json"},
        )

    def _container(self, request: Any, objects: dict[str, bytes], query: dict[str, str]) -> Any:
        if request.method == "HEAD":
            return _response(
                request, 204, b"", headers={"X-Container-Object-Count": str(len(objects))}
            )
        prefix, marker = query.get("prefix", ""), query.get("marker", "")
        keys = sorted(k for k in objects if k.startswith(prefix) and k > marker)[:PAGE]
        listing = [
            {
                "name": k,
                "bytes": len(objects[k]),
                "hash": _md5(objects[k]).hex(),
                "content_type": "application/octet-stream",
                "last_modified": "2024-01-01T00:00:00.000000",
            }
            for k in keys
        ]
        return _response(
            request,
            200,
            json.dumps(listing).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )

    def _object(self, request: Any, objects: dict[str, bytes], key: str) -> Any:
        data = objects.get(key)
        if request.method == "PUT":
            body = request.body or b""
            if request.headers.get("ETag") != _md5(body).hex():
                return _response(request, 422)
            objects[key] = body
            return _response(request, 201, headers={"Etag": _md5(body).hex()})
        if data is None:
            return _response(request, 404)
        if request.method == "HEAD":
            return _response(
                request,
                200,
                headers={
                    "Content-Length": str(len(data)),
                    "Etag": _md5(data).hex(),
                    "Content-Type": "application/octet-stream",
                },
            )
        if request.method == "DELETE":
            del objects[key]
            return _response(request, 204)
        return _range(request, data)


@dataclass
class Store:
    """One backend under test: how to open it, its secrets, and its fault injector."""

    kind: str
    url: str
    credentials: Credentials | None
    faults: Faults | None = None
    opened: list[Backend] = field(default_factory=list)

    def open(self, **options: object) -> Backend:
        url = self.url
        if options:
            sep = "&" if "?" in url else "?"
            url += sep + "&".join(f"{k}={v}" for k, v in options.items())
        backend = open_backend(url, self.credentials)
        self.opened.append(backend)
        return backend

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.credentials.secrets() if self.credentials else ()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto-s3"))
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not Azurite.available():
        pytest.fail("Azurite is not installed: run `make test` (it installs it under build/npm)")
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        driver_cls: Any = AzureBlobsStorageDriver  # libcloud is untyped
        driver = driver_cls(ACCOUNT, ACCOUNT_KEY, host="127.0.0.1", port=server.port, secure=False)
        driver.create_container(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def http() -> Iterator[requests_mock.Mocker]:
    """The HTTP boundary: fakes and faults answer first, real servers (moto, Azurite) after."""
    with requests_mock.Mocker(real_http=True) as mocker:
        yield mocker


@pytest.fixture
def gcs_emulator(http: requests_mock.Mocker) -> str:
    """The endpoint of a GCS XML API served somewhere other than Google's host."""
    http.add_matcher(FakeGCS(host="gcs-emulator.test"))
    return "http://gcs-emulator.test:4443"


BACKENDS = [
    "local",
    pytest.param("s3", marks=pytest.mark.slow),
    pytest.param("azure", marks=pytest.mark.slow),
    "gcs",
    "swift",
]


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, http: requests_mock.Mocker
) -> Iterator[Store]:
    kind: str = request.param
    # A fresh prefix per test: the servers live for the whole session.
    prefix = f"t-{uuid.uuid4().hex[:12]}/repo"
    if kind == "local":
        created = Store(kind, f"file://{tmp_path / 'store'}", None)
    else:
        faults = Faults()
        if kind == "s3":
            server = request.getfixturevalue("moto_s3")
            url = f"s3://{BUCKET}/{prefix}?endpoint={server.endpoint}&region=us-east-1"
            creds = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        elif kind == "azure":
            server = request.getfixturevalue("azurite")
            url = f"azure://{BUCKET}/{prefix}?endpoint={server.endpoint}"
            creds = Credentials(ACCOUNT, ACCOUNT_KEY)
        elif kind == "gcs":
            http.add_matcher(FakeGCS())
            url = f"gs://{BUCKET}/{prefix}"
            creds = Credentials(GCS_KEY_ID, GCS_SECRET)
        else:
            http.add_matcher(FakeSwift())
            url = f"swift://{BUCKET}/{prefix}?auth_url={KEYSTONE}&tenant=demo&region=RegionOne"
            creds = Credentials(SWIFT_USER, SWIFT_PASSWORD)
        http.add_matcher(faults)  # added last, consulted first
        created = Store(kind, url, creds, faults)
    yield created
    for backend in created.opened:
        backend.close()
