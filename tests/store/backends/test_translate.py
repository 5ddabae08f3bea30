"""Lower exceptions → StoreError: the classification the retry wrapper relies on."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, LibcloudError

from imagekit.errors import IntegrityError, StoreError
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.registry import open_backend
from imagekit.store.backends.translate import http_status, translate
from testbed.process import free_port

# libcloud's exception constructors are untyped.
HTTPError: Any = BaseHTTPError
RateLimited: Any = RateLimitReachedError


@pytest.mark.parametrize(
    ("exc", "transient", "text"),
    [
        (LibcloudError("Unknown error. Status code: 503"), True, "HTTP 503"),
        (LibcloudError("Unexpected status code, status_code=500"), True, "HTTP 500"),
        (LibcloudError("ServerBusy: try later Status code: 429."), True, "HTTP 429"),
        (LibcloudError("Unexpected status code: 400"), False, "HTTP 400"),
        (HTTPError(502, "bad gateway"), True, "HTTP 502"),
        (RateLimited(), True, "throttled"),
        (InvalidCredsError("<AWSAccessKeyId>AKIDLEAK</AWSAccessKeyId>"), False, "refused"),
        (requests.exceptions.ConnectionError("connection reset"), True, "network error"),
        (requests.exceptions.ReadTimeout("read timed out"), True, "network error"),
        (requests.exceptions.SSLError("certificate verify failed"), False, "TLS failed"),
        (ValueError("odd"), False, "unexpected ValueError"),
    ],
)
def test_classification(exc: Exception, transient: bool, text: str) -> None:
    error = translate(exc, "s3://b/p: read x")
    assert error.transient is transient
    assert text in str(error)
    assert "AKIDLEAK" not in str(error)  # response bodies never reach the message


def test_truncated_transfer_is_a_transient_integrity_error() -> None:
    error = translate(requests.exceptions.ChunkedEncodingError("IncompleteRead"), "read x")
    assert isinstance(error, IntegrityError)
    assert error.transient


def test_secrets_are_scrubbed_from_messages() -> None:
    exc = requests.exceptions.ConnectionError("failed for user hunter2-secret at host")
    assert "hunter2-secret" not in str(translate(exc, "read x", secrets=("hunter2-secret",)))


def test_status_spellings() -> None:
    assert http_status(LibcloudError("Error in multipart commit")) is None
    assert http_status(LibcloudError("Error uploading chunk 3. Code: 503")) == 503


def test_connection_refused_is_transient_and_names_the_store() -> None:
    port = free_port()  # nothing listens there now
    backend = open_backend(
        f"s3://bucket/p?endpoint=http://127.0.0.1:{port}&retries=1&timeout=2",
        Credentials("AKIDEXAMPLE", "secret-example"),
    )
    with pytest.raises(StoreError) as caught:
        backend.read("x")
    assert caught.value.transient
    assert str(caught.value).startswith(f"s3://bucket/p?endpoint=http://127.0.0.1:{port}")
    assert "network error" in str(caught.value)
