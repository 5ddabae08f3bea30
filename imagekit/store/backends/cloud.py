"""What every libcloud-backed family shares: names under a prefix, reads, stat, list, delete.

A family module (s3, azure, gcs, swift) gives a driver factory and its way to upload bytes
atomically; this module does the rest on libcloud's ``StorageDriver`` API.

Thread safety: a libcloud driver is not safe to share between threads (its connection keeps
per-request state: action, method, signing context, the last response). So each thread gets its
own driver, built on first use and closed by ``close``.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from libcloud.http import LibcloudConnection
from libcloud.storage.base import Container, Object, StorageDriver
from libcloud.storage.types import ObjectDoesNotExistError

from imagekit.errors import UsageError
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.backends.names import check_name
from imagekit.store.backends.translate import http_status, translating

#: Seconds a request may wait for a connection or between bytes before it is abandoned (and,
#: being a timeout, retried). Long enough for a slow store, short enough to notice a dead one.
DEFAULT_TIMEOUT = 60.0

#: 416 Range Not Satisfiable: the whole range lies past the end, which the contract reads as b"".
_RANGE_NOT_SATISFIABLE = 416


class TimedConnection(LibcloudConnection):
    """libcloud's HTTP connection, with the timeout also applied to raw (streamed) requests.

    libcloud 3.9.1 passes its timeout to ``request`` but not to ``prepared_request``, which
    every download and upload uses: a stalled store would hang a transfer forever.
    """

    def prepared_request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
        stream: bool = False,
    ) -> None:
        this: Any = self  # libcloud's attributes are typed Optional; all are set by now
        headers = this._normalize_headers(headers=headers)
        request = requests.Request(method, this.host + url, data=body, headers=headers)
        prepared = this.session.prepare_request(request)
        this.response = this.session.send(
            prepared, stream=stream, verify=this.verification, timeout=this.session.timeout
        )


@dataclass(frozen=True)
class Endpoint:
    """Where a store answers when it is not the provider's default host (emulators, on-prem)."""

    host: str
    port: int
    secure: bool
    path: str = ""


def modified_time(extra: dict[str, Any] | None) -> float | None:
    """The storage's last-modified time of an object from libcloud's ``extra``, or None.

    The drivers pass on what the service sent: ISO 8601 in S3 and GCS listings and Swift's JSON
    listing (Swift's without a zone: UTC), RFC 1123 dates in headers and Azure listings.
    """
    text = (extra or {}).get("last_modified")
    if not isinstance(text, str) or not text:
        return None
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_endpoint(url: str, value: str) -> Endpoint:
    """``http[s]://host[:port][/path]`` → ``Endpoint``; anything else is the user's to fix."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url}: endpoint must look like https://host[:port], not {value!r}")
    if parts.username or parts.password:
        raise UsageError(f"{url}: the endpoint must not carry credentials")
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        raise UsageError(f"{url}: endpoint has an invalid port") from exc
    return Endpoint(parts.hostname, port, secure, parts.path.rstrip("/"))


class CloudBackend(Backend):
    """A ``Backend`` over one container of a libcloud storage driver, under an optional prefix."""

    def __init__(
        self,
        url: str,
        container: str,
        prefix: str,
        make_driver: Callable[[], StorageDriver],
        secrets: tuple[str, ...] = (),
    ):
        self.url = url
        self.container_name = container
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._make_driver = make_driver
        self._secrets = secrets
        self._local = threading.local()
        self._drivers: list[StorageDriver] = []
        self._drivers_lock = threading.Lock()

    # -- the family's part ------------------------------------------------------------------

    @abc.abstractmethod
    def upload(self, driver: Any, container: Container, key: str, data: bytes) -> None:
        """Store ``data`` as ``key`` so that it appears whole or not at all."""

    # -- shared machinery -------------------------------------------------------------------

    def driver(self) -> Any:
        """This thread's driver (built on first use)."""
        driver = getattr(self._local, "driver", None)
        if driver is None:
            with translating(f"{self.url}: connect", self._secrets):
                driver = self._make_driver()
            # Before the first request, when libcloud builds the HTTP connection lazily.
            driver.connection.conn_class = TimedConnection
            self._local.driver = driver
            with self._drivers_lock:
                self._drivers.append(driver)
        return driver

    def key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def container(self, driver: Any) -> Container:
        return Container(name=self.container_name, extra={}, driver=driver)

    def object(self, driver: Any, key: str, size: int = 0) -> Object:
        return Object(key, size, "", {}, {}, self.container(driver), driver)

    def translating(self, operation: str, name: str = "") -> Any:
        where = f"{self.url}: {operation} {name}".rstrip()
        return translating(where, self._secrets)

    # -- the contract -----------------------------------------------------------------------

    def write(self, name: str, data: bytes) -> None:
        key = self.key(name)
        with self.translating("write", name):
            driver = self.driver()
            self.upload(driver, self.container(driver), key, data)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self.key(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        if length == 0:
            return b""
        with self.translating("read", name):
            driver = self.driver()
            obj = self.object(driver, key)
            try:
                if offset == 0 and length is None:
                    chunks = driver.download_object_as_stream(obj)
                else:
                    end = None if length is None else offset + length
                    chunks = driver.download_object_range_as_stream(obj, offset, end)
                return b"".join(chunks)
            except ObjectDoesNotExistError:
                raise
            except Exception as exc:
                if http_status(exc) == _RANGE_NOT_SATISFIABLE:
                    return b""
                raise

    def stat(self, name: str) -> ObjectInfo:
        key = self.key(name)
        with self.translating("stat", name):
            obj = self.driver().get_object(self.container_name, key)
            return ObjectInfo(name=name, size=int(obj.size), modified=modified_time(obj.extra))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self.translating("list", prefix):
            driver = self.driver()
            listing = driver.iterate_container_objects(
                self.container(driver), prefix=self.prefix + prefix
            )
            for obj in listing:
                name = obj.name[len(self.prefix) :]
                yield ObjectInfo(name=name, size=int(obj.size), modified=modified_time(obj.extra))

    def delete(self, name: str) -> None:
        key = self.key(name)
        with self.translating("delete", name):
            driver = self.driver()
            # Idempotent: already gone is what the caller wanted.
            with contextlib.suppress(ObjectDoesNotExistError):
                driver.delete_object(self.object(driver, key))

    def close(self) -> None:
        with self._drivers_lock:
            drivers, self._drivers = self._drivers, []
        for driver in drivers:
            http = getattr(driver.connection, "connection", None)
            session = getattr(http, "session", None)
            if session is not None:
                session.close()
        self._local = threading.local()
