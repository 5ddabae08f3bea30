"""``gs://bucket/prefix``: Google Cloud Storage through its XML API.

Credentials: HMAC interoperability keys (``IMAGEKIT_GCS_ACCESS_KEY_ID`` starting with ``GOOG``,
``IMAGEKIT_GCS_SECRET``), or a service-account JSON key file (``GOOGLE_APPLICATION_CREDENTIALS``),
for which libcloud fetches OAuth2 tokens and caches them in ``~/.google_libcloud_auth.*``.
Options (URL query): ``project=``, ``endpoint=http[s]://host[:port]`` (an emulator or proxy).

Writes: one PUT per object (libcloud has no resumable upload; a GCS object becomes visible only
when its upload completes), carrying ``x-goog-hash: md5=…`` so GCS rejects a damaged body.
Content-MD5 is not used because libcloud's HMAC signer lower-cases its value.
"""

from __future__ import annotations

import json
from typing import Any

from libcloud.storage.base import Container
from libcloud.storage.drivers.google_storage import GoogleStorageConnection, GoogleStorageDriver

from imagekit.errors import UsageError
from imagekit.store.backends.cloud import DEFAULT_TIMEOUT, CloudBackend, Endpoint, parse_endpoint
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.s3 import put_object


class GCSBackend(CloudBackend):
    def __init__(
        self,
        url: str,
        bucket: str,
        prefix: str,
        credentials: Credentials,
        project: str | None = None,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        key, secret = _identity(url, credentials)
        project = project or credentials.extra.get("project")
        driver_cls = _driver_class(parse_endpoint(url, endpoint)) if endpoint else None

        def make_driver() -> Any:
            cls = driver_cls or GoogleStorageDriver
            target_secure = driver_cls.secure_endpoint if driver_cls else True
            return cls(key, secret, project=project, secure=target_secure, timeout=timeout)

        super().__init__(url, bucket, prefix, make_driver, credentials.secrets())

    def upload(self, driver: Any, container: Container, key: str, data: bytes) -> None:
        put_object(driver, container, key, data, checksum_header="x-goog-hash")


def _identity(url: str, credentials: Credentials) -> tuple[str, str]:
    if credentials.key and credentials.secret:
        return credentials.key, credentials.secret
    path = credentials.extra.get("service_account_file")
    if not path:
        raise UsageError(
            f"{url}: no Google Cloud Storage credentials",
            hint="set IMAGEKIT_GCS_ACCESS_KEY_ID and IMAGEKIT_GCS_SECRET (HMAC keys) or "
            "GOOGLE_APPLICATION_CREDENTIALS (a service-account JSON key file)",
        )
    try:
        with open(path) as handle:
            email = json.load(handle)["client_email"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path}: not a readable service-account JSON key file") from exc
    # libcloud reads the private key from the file itself when given its path.
    return str(email), path


def _driver_class(target: Endpoint) -> Any:
    """A driver whose connection talks to ``target``.

    ``GoogleStorageDriver`` forwards ``host``/``port`` positionally into the wrong parameters of
    its connection (libcloud 3.9.1), so the endpoint goes into a connection subclass instead.
    """

    class EndpointConnection(GoogleStorageConnection):
        host = target.host

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            self.port = target.port

    class EndpointDriver(GoogleStorageDriver):
        connectionCls = EndpointConnection
        secure_endpoint = target.secure

    return EndpointDriver
