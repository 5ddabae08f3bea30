"""``swift://container/prefix``: OpenStack Swift, Rackspace Cloud Files and other Swift stores.

Credentials: user name and password (``OS_USERNAME``/``OS_PASSWORD``, or an API key for
Rackspace). Options (URL query, or the ``OS_*`` variables / credentials file): ``auth_url=``
(Keystone), ``auth_version=`` (libcloud's names: ``3.x_password`` by default, ``2.0_password``,
``2.0_apikey`` for Rackspace), ``tenant=`` (project), ``domain=``, ``region=``, and
``service_name=`` (the catalog name of the object store: ``swift``, or ``cloudFiles`` at
Rackspace).

Writes: one PUT per object with its length and its MD5 as ETag, which Swift checks on arrival;
Swift makes an object visible only once it is stored whole. A single object is capped at 5 GiB
(larger ones need segments, which imagekit's packs never do).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import LibcloudError
from libcloud.storage.base import Container
from libcloud.storage.drivers.cloudfiles import OpenStackSwiftStorageDriver
from libcloud.storage.types import ContainerDoesNotExistError, ObjectHashMismatchError

from imagekit.errors import StoreError, UsageError
from imagekit.store.backends.cloud import DEFAULT_TIMEOUT, CloudBackend
from imagekit.store.backends.credentials import Credentials

DEFAULT_AUTH_VERSION = "3.x_password"
DEFAULT_SERVICE_NAME = "swift"

#: Swift refuses a single object over 5 GiB (its default max_file_size).
MAX_OBJECT_SIZE = 5 * 2**30

#: Swift answers 422 Unprocessable Entity when the body does not match the ETag sent.
_UNPROCESSABLE = 422


class SwiftBackend(CloudBackend):
    def __init__(
        self,
        url: str,
        container: str,
        prefix: str,
        credentials: Credentials,
        auth_url: str | None = None,
        auth_version: str = DEFAULT_AUTH_VERSION,
        tenant: str | None = None,
        domain: str | None = None,
        region: str | None = None,
        service_name: str = DEFAULT_SERVICE_NAME,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        extra = credentials.extra
        auth_url = auth_url or extra.get("auth_url")
        if not credentials.key or not credentials.secret:
            raise UsageError(f"{url}: no Swift credentials", hint="set OS_USERNAME and OS_PASSWORD")
        if not auth_url:
            raise UsageError(
                f"{url}: no Keystone auth URL", hint="add ?auth_url= or set OS_AUTH_URL"
            )
        kwargs: dict[str, Any] = {
            "ex_force_auth_url": auth_url,
            "ex_force_auth_version": auth_version,
            "ex_tenant_name": tenant or extra.get("tenant"),
            "ex_domain_name": domain or extra.get("domain") or "Default",
            "ex_force_service_name": service_name,
            "region": region or extra.get("region"),
            "timeout": timeout,
        }
        key, secret = credentials.key, credentials.secret

        def make_driver() -> Any:
            return OpenStackSwiftStorageDriver(key, secret, **kwargs)  # type: ignore[no-untyped-call]

        super().__init__(url, container, prefix, make_driver, credentials.secrets())

    def upload(self, driver: Any, container: Container, key: str, data: bytes) -> None:
        if len(data) > MAX_OBJECT_SIZE:
            raise StoreError(f"{self.url}: {key} is larger than Swift's 5 GiB object limit")
        put_object(driver, container, key, data)


def put_object(driver: Any, container: Container, key: str, data: bytes) -> None:
    """One PUT with Content-Length and ETag (the body's MD5), which Swift checks on arrival.

    libcloud's stream upload hashes the body only after sending it and reports any failure
    status as a missing ETag, hiding whether it is worth retrying.
    """
    headers = {
        "ETag": hashlib.md5(data).hexdigest(),
        "Content-Length": str(len(data)),
        "Content-Type": "application/octet-stream",
    }
    path = f"/{quote(container.name)}/{quote(key)}"
    try:
        response = driver.connection.request(path, method="PUT", data=data, headers=headers)
    except BaseHTTPError as exc:
        if exc.code == _UNPROCESSABLE:
            raise ObjectHashMismatchError(  # type: ignore[no-untyped-call]
                "ETag mismatch", driver, key
            ) from exc
        raise
    if response.status == 404:
        raise ContainerDoesNotExistError(None, driver, container.name)  # type: ignore[no-untyped-call]
    if response.status != 201:
        raise LibcloudError(f"Unexpected status code: {response.status}", driver=driver)
