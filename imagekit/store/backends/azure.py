"""``azure://container/prefix``: Azure Blob Storage (block blobs), shared-key authentication.

Options (URL query): ``account=`` (the storage account name; not a secret, may also come with
the credentials), ``endpoint=http[s]://host[:port]`` for Azurite or a custom host (libcloud then
addresses the account by path: ``host/account/container/blob``), ``multipart_threshold=`` bytes.

Writes: up to the threshold one Put Blob carrying Content-MD5; above it libcloud's block upload
(4 MiB Put Block each, then Put Block List), and a block blob changes only when its block list is
committed. Either way an object appears whole or not at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from typing import Any
from urllib.parse import quote

from libcloud.common.types import LibcloudError
from libcloud.storage.base import Container
from libcloud.storage.drivers.azure_blobs import AzureBlobsStorageDriver
from libcloud.storage.types import ContainerDoesNotExistError

from imagekit.errors import UsageError
from imagekit.store.backends.cloud import DEFAULT_TIMEOUT, CloudBackend, parse_endpoint
from imagekit.store.backends.credentials import Credentials

#: 64 MiB: one Put Blob is cheapest below it; libcloud's x-ms-version (2018-11-09) caps a single
#: Put Blob at 256 MiB, and blocks bound what a failure costs.
DEFAULT_MULTIPART_THRESHOLD = 64 * 2**20


class AzureBackend(CloudBackend):
    def __init__(
        self,
        url: str,
        container: str,
        prefix: str,
        credentials: Credentials,
        account: str | None = None,
        endpoint: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        account = account or credentials.key
        secret = credentials.secret
        if not account or not secret:
            raise UsageError(
                f"{url}: no Azure storage account or key",
                hint="set IMAGEKIT_AZURE_ACCOUNT and IMAGEKIT_AZURE_KEY",
            )
        try:
            base64.b64decode(secret, validate=True)
        except binascii.Error as exc:
            raise UsageError(f"{url}: the Azure account key is not base64") from exc
        self.multipart_threshold = multipart_threshold
        target = parse_endpoint(url, endpoint) if endpoint else None

        def make_driver() -> Any:
            kwargs: dict[str, Any] = {"timeout": timeout}
            if target is not None:
                kwargs.update(host=target.host, port=target.port, secure=target.secure)
            return AzureBlobsStorageDriver(account, secret, **kwargs)  # type: ignore[no-untyped-call]

        super().__init__(url, container, prefix, make_driver, (account, *credentials.secrets()))

    def upload(self, driver: Any, container: Container, key: str, data: bytes) -> None:
        if len(data) > self.multipart_threshold:
            driver.upload_object_via_stream(io.BytesIO(data), container, key, verify_hash=False)
        else:
            put_blob(driver, container, key, data)


def put_blob(driver: Any, container: Container, key: str, data: bytes) -> None:
    """One signed Put Blob with Content-MD5 (libcloud's own needs a file on disk)."""
    headers = {
        "x-ms-blob-type": "BlockBlob",
        "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "Content-Type": "application/octet-stream",
    }
    if data:
        # Shared-key signing wants an empty Content-Length for an empty body, while requests
        # still sends "0": so name the length only when there is one.
        headers["Content-Length"] = str(len(data))
    path = f"/{quote(container.name)}/{quote(key)}"
    response = driver.connection.request(path, method="PUT", data=data, headers=headers)
    if response.status == 404:
        raise ContainerDoesNotExistError(None, driver, container.name)  # type: ignore[no-untyped-call]
    if response.status != 201:
        raise LibcloudError(f"Unexpected status code: {response.status}", driver=driver)
