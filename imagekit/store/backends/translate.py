"""Lower exceptions → the imagekit error tree, in one place for every libcloud-backed family.

Each backend wraps its driver calls in ``translating(...)``; nothing else looks at libcloud,
requests or socket exceptions. The rules:

    ObjectDoesNotExistError                    → ObjectNotFound
    ContainerDoesNotExistError                 → StoreError (bucket/container missing)
    InvalidCredsError, HTTP 401/403            → StoreError (credentials refused)
    RateLimitReachedError, HTTP 408/429/5xx    → StoreError, transient
    ObjectHashMismatchError                    → StoreError, transient (damaged in transit)
    truncated body (IncompleteRead, …)         → IntegrityError, transient
    TLS failure                                → StoreError (certificate problems do not heal)
    connection refused/reset, DNS, timeouts    → StoreError, transient
    any other HTTP status                      → StoreError

Messages name the store URL, the operation and the HTTP status or exception class, never the
response body (an S3 error body echoes the access key id) and never a credential; as a last
guard every message is scrubbed of the secret strings the backend knows.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, LibcloudError, MalformedResponseError
from libcloud.storage.types import (
    ContainerDoesNotExistError,
    ObjectDoesNotExistError,
    ObjectHashMismatchError,
)

from imagekit.errors import ImagekitError, IntegrityError, ObjectNotFound, StoreError

#: Statuses worth another try: request timeout, throttling; every 5xx is added by range.
TRANSIENT_STATUSES = frozenset({408, 429})

#: libcloud puts the status only in the message text, in several spellings:
#: "Status code: 503", "status_code=503", "Unexpected status code: 503", "Code: 503".
_STATUS_RE = re.compile(r"(?i)code\s*[:=]\s*(\d{3})\b")

#: How much of a network error's own text a message keeps (it names host and port).
_DETAIL_CHARS = 160

_TRUNCATED = (
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    http.client.IncompleteRead,
)
_NETWORK = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    socket.timeout,
    ConnectionError,
    OSError,
)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status a libcloud exception carries, wherever it keeps it."""
    for attr in ("code", "http_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    match = _STATUS_RE.search(str(getattr(exc, "value", exc)))
    return int(match.group(1)) if match else None


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES or 500 <= status <= 599


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        # Short strings (e.g. an empty or 1-char value) would shred the message, and cannot
        # be secrets worth hiding anyway.
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def translate(exc: BaseException, where: str, secrets: Iterable[str] = ()) -> StoreError:
    """The ``StoreError`` a user sees for ``exc`` raised while doing ``where``."""
    error = _classify(exc, where)
    error.message = redact(error.message, secrets)
    return error


def _classify(exc: BaseException, where: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ImagekitError):
        return StoreError(f"{where}: {exc.message}", hint=exc.hint, transient=exc.transient)
    if isinstance(exc, ObjectDoesNotExistError):
        return ObjectNotFound(f"{where}: no such object")
    if isinstance(exc, ContainerDoesNotExistError):
        return StoreError(
            f"{where}: the bucket or container does not exist",
            hint="create it first, or fix the store URL",
        )
    if isinstance(exc, InvalidCredsError):
        return _refused(where, http_status(exc) or 401)
    if isinstance(exc, RateLimitReachedError):
        return StoreError(f"{where}: throttled by the store (HTTP 429)", transient=True)
    if isinstance(exc, ObjectHashMismatchError):
        return StoreError(f"{where}: checksum mismatch after upload", transient=True)
    if isinstance(exc, MalformedResponseError):
        return StoreError(f"{where}: unreadable response from the store", transient=True)
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return StoreError(f"{where}: TLS failed ({_detail(exc)})", hint="check the endpoint")
    if isinstance(exc, _TRUNCATED):
        return IntegrityError(f"{where}: transfer cut short ({_detail(exc)})", transient=True)
    if isinstance(exc, _NETWORK):
        return StoreError(f"{where}: network error ({_detail(exc)})", transient=True)
    if isinstance(exc, LibcloudError | BaseHTTPError):
        status = http_status(exc)
        if status in (401, 403):
            return _refused(where, status)
        if status is not None:
            return StoreError(f"{where}: HTTP {status}", transient=is_transient_status(status))
        return StoreError(f"{where}: {type(exc).__name__}")
    return StoreError(f"{where}: unexpected {type(exc).__name__}")


def _refused(where: str, status: int) -> StoreError:
    return StoreError(
        f"{where}: credentials refused (HTTP {status})",
        hint="check the store credentials (see docs/stores.md)",
    )


def _detail(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:_DETAIL_CHARS]}"


@contextmanager
def translating(where: str, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Run a block of driver calls; any failure leaves it as a ``StoreError``."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise translate(exc, where, secrets) from exc
