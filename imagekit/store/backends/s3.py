"""``s3://bucket/prefix``: Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, Wasabi, …).

Options (URL query): ``endpoint=http[s]://host[:port]`` for a non-AWS store, ``region=`` (the
signing region, default us-east-1), ``multipart_threshold=`` bytes. Path-style addressing, AWS
signature v4.

Writes: up to the threshold one signed PUT carrying Content-MD5, so the store itself rejects a
damaged body; above it libcloud's multipart upload (5 MiB parts, each with Content-MD5), which S3
makes visible only when the upload completes. Either way an object appears whole or not at all.
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any
from urllib.parse import quote

from libcloud.common.types import LibcloudError
from libcloud.storage.base import Container
from libcloud.storage.drivers.s3 import REGION_TO_HOST_MAP, S3StorageDriver
from libcloud.storage.types import ContainerDoesNotExistError

from imagekit.errors import UsageError
from imagekit.store.backends.cloud import DEFAULT_TIMEOUT, CloudBackend, Endpoint, parse_endpoint
from imagekit.store.backends.credentials import Credentials

#: 64 MiB: below it one PUT is cheapest (one request, no part bookkeeping); above it multipart
#: bounds what a failure costs and passes the 5 GiB single-PUT limit of S3.
DEFAULT_MULTIPART_THRESHOLD = 64 * 2**20

DEFAULT_REGION = "us-east-1"


class S3Backend(CloudBackend):
    def __init__(
        self,
        url: str,
        bucket: str,
        prefix: str,
        credentials: Credentials,
        endpoint: str | None = None,
        region: str = DEFAULT_REGION,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        if not credentials.key or not credentials.secret:
            raise UsageError(
                f"{url}: no S3 credentials",
                hint="set IMAGEKIT_S3_ACCESS_KEY_ID and IMAGEKIT_S3_SECRET_ACCESS_KEY",
            )
        if region not in REGION_TO_HOST_MAP:
            raise UsageError(
                f"{url}: region {region!r} is unknown to libcloud",
                hint="S3-compatible stores usually accept region=us-east-1",
            )
        self.multipart_threshold = multipart_threshold
        target: Endpoint | None = parse_endpoint(url, endpoint) if endpoint else None
        key, secret, token = credentials.key, credentials.secret, credentials.token

        def make_driver() -> Any:
            kwargs: dict[str, Any] = {"region": region, "token": token, "timeout": timeout}
            if target is not None:
                kwargs.update(host=target.host, port=target.port, secure=target.secure)
            return S3StorageDriver(key, secret, **kwargs)  # type: ignore[no-untyped-call]

        super().__init__(url, bucket, prefix, make_driver, credentials.secrets())

    def upload(self, driver: Any, container: Container, key: str, data: bytes) -> None:
        if len(data) > self.multipart_threshold:
            driver.upload_object_via_stream(io.BytesIO(data), container, key)
        else:
            put_object(driver, container, key, data)


def put_object(
    driver: Any, container: Container, key: str, data: bytes, checksum_header: str = "Content-MD5"
) -> None:
    """One signed PUT carrying the body's MD5, through the driver's connection.

    libcloud's own single-PUT paths need a file on disk (``upload_object``) or send the body
    with chunked transfer encoding (the stream path), which S3 refuses without a length.
    """
    digest = base64.b64encode(hashlib.md5(data).digest()).decode()
    value = digest if checksum_header == "Content-MD5" else f"md5={digest}"
    headers = {
        checksum_header: value,
        "Content-Length": str(len(data)),
        "Content-Type": "application/octet-stream",
    }
    path = f"/{quote(container.name)}/{quote(key)}"
    response = driver.connection.request(path, method="PUT", data=data, headers=headers)
    if response.status == 404:
        raise ContainerDoesNotExistError(None, driver, container.name)  # type: ignore[no-untyped-call]
    if response.status != 200:
        raise LibcloudError(f"Unexpected status code: {response.status}", driver=driver)
