"""Google Cloud calls for the gcp provider: libcloud's GCE driver, plus what it does not do.

- GCS object upload/delete (XML API, ``PUT/DELETE https://storage.googleapis.com/BUCKET/OBJ``)
  through libcloud's signed ``GoogleStorageDriver`` connection, the file streamed and its MD5
  sent as ``x-goog-hash`` so a damaged body is refused;
- ``images.insert`` and ``instances.insert`` with bodies of our own (``bodies.py``), their
  operations polled with our own deadline (libcloud would wait at most its 180 s default) and a
  failed one quoted from its ``error.errors[]``; then ``images.get`` until ``READY``
  (``FAILED`` is the "image rejected" answer);
- firewall, deletes and serial output through the driver (Compute API v1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.google import GoogleBaseError, QuotaExceededError, ResourceNotFoundError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.storage.drivers.google_storage import GoogleStorageDriver

from imagekit.errors import ProviderError
from imagekit.providers.cloud.common import poll
from imagekit.providers.gcp.bodies import operation_errors

GCS_HOST = "storage.googleapis.com"


POLL_INTERVAL = 10.0  # seconds between images.get polls: imports take minutes
_MD5_BLOCK = 1 << 20


class ServiceAccountStorageDriver(GoogleStorageDriver):
    """libcloud's GCS driver, always authenticating as a service account.

    ``GoogleStorageDriver`` 3.9.1 drops ``auth_type``/``credential_file`` on the way to its
    connection, which then guesses the auth type from the e-mail and, on a wrong guess, starts
    an interactive browser login with a local HTTP listener. This pins both.
    """

    def __init__(self, key: str, secret: str, *, project: str, credential_file: str) -> None:
        self._credential_file = credential_file
        super().__init__(key, secret, project=project)  # type: ignore[no-untyped-call]

    def _ex_connection_class_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._ex_connection_class_kwargs()  # type: ignore[no-untyped-call]
        kwargs.update(auth_type="SA", credential_file=self._credential_file)
        return kwargs


def call(what: str, fn: Callable[[], Any]) -> Any:
    """Run one libcloud call; its errors become ``ProviderError`` with the API's reason."""
    try:
        return fn()
    except QuotaExceededError as exc:
        raise ProviderError(
            f"GCE quota refused {what}: {exc.value}",
            hint="request a quota increase (CPUs, in-use IPs, images) or use another region",
        ) from exc
    except InvalidCredsError as exc:
        raise ProviderError(
            f"Google refused the credentials ({what})",
            hint="check GOOGLE_APPLICATION_CREDENTIALS (a service-account JSON key file)",
        ) from exc
    except GoogleBaseError as exc:
        code = getattr(exc, "code", "")
        if getattr(exc, "http_code", 0) == 403:
            raise ProviderError(
                f"Google denied {what}: {exc.value}",
                hint="the service account needs roles/compute.admin and roles/storage.admin",
            ) from exc
        raise ProviderError(f"GCE {what} failed: [{code}] {exc.value}") from exc
    except BaseHTTPError as exc:
        raise ProviderError(f"Google {what} failed: HTTP {exc.code} {exc.message}") from exc
    except LibcloudError as exc:
        raise ProviderError(f"Google {what} failed: {exc.value}") from exc


def object_url(bucket: str, name: str) -> str:
    """The https form ``images.insert`` wants (it refuses ``gs://``)."""
    return f"https://{GCS_HOST}/{bucket}/{quote(name)}"


def md5_b64(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(_MD5_BLOCK):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def objects_insert(storage: Any, bucket: str, name: str, path: Path) -> str:
    """PUT Object (XML API): upload ``path`` as ``bucket/name``; returns the https URL."""
    headers = {"Content-Type": "application/gzip", "x-goog-hash": f"md5={md5_b64(path)}"}
    with path.open("rb") as body:
        response = call(
            "image upload to Cloud Storage",
            lambda: storage.connection.request(
                f"/{bucket}/{quote(name)}", method="PUT", data=body, headers=headers
            ),
        )
    if int(response.status) not in (200, 201):
        raise ProviderError(f"Cloud Storage refused the upload of {name}: HTTP {response.status}")
    return object_url(bucket, name)


def objects_delete(storage: Any, bucket: str, name: str) -> bool:
    """DELETE Object; ``False`` when it was already gone."""
    try:
        response = storage.connection.request(f"/{bucket}/{quote(name)}", method="DELETE")
    except BaseHTTPError as exc:
        if exc.code == 404:
            return False
        raise ProviderError(f"Cloud Storage delete of {name} failed: HTTP {exc.code}") from exc
    return int(response.status) != 404


def images_insert(driver: Any, body: dict[str, Any]) -> dict[str, Any]:
    """images.insert (``bodies.image_body``); returns the operation at once (see
    ``wait_operation``): an import of a large disk takes longer than any library default."""
    answer = call(
        "image registration",
        lambda: driver.connection.request("/global/images", method="POST", data=body),
    )
    return dict(answer.object)


def _operation(driver: Any, link: str, what: str) -> dict[str, Any]:
    """operations.get, read raw: libcloud's parser raises on the first of a failed operation's
    errors and drops the others, which are often the ones that say why."""
    answer = call(f"{what} (operation lookup)", lambda: driver.connection.request(link, raw=True))
    status = int(getattr(answer, "status", 200))
    body = answer.body if isinstance(answer.body, str) else bytes(answer.body or b"").decode()
    if status != 200:
        raise ProviderError(f"GCE {what}: operation lookup answered HTTP {status}", transient=True)
    return dict(json.loads(body or "{}"))


def operation_error(what: str, operation: dict[str, Any]) -> ProviderError | None:
    """The error of a finished operation that failed, quoting every ``error.errors[]`` entry."""
    errors = operation_errors(operation)
    if operation.get("status") != "DONE" or not errors:
        return None
    quoted = "; ".join(f"[{code}] {message}" for code, message in errors)
    name = operation.get("name", "")
    if any(code == "QUOTA_EXCEEDED" for code, _ in errors):
        return ProviderError(
            f"GCE quota refused {what} (operation {name}): {quoted}",
            hint="request a quota increase (CPUs, in-use IPs, images) or use another region",
        )
    return ProviderError(f"GCE {what} failed (operation {name}): {quoted}")


def wait_operation(
    driver: Any,
    operation: dict[str, Any],
    what: str,
    deadline: float,
    interval: float = POLL_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll a zonal or global operation until DONE; a failed one is a ``ProviderError``."""
    link = str(operation.get("selfLink") or "")
    if operation.get("status") == "DONE" or not link:
        error = operation_error(what, operation)
        if error is not None:
            raise error
        return operation
    return poll(
        lambda: _operation(driver, link, what),
        done=lambda op: op.get("status") == "DONE" and not operation_errors(op),
        failed=lambda op: operation_error(what, op),
        late=lambda op: ProviderError(
            f"GCE {what} not done in time (operation {op.get('name')}, status {op.get('status')})"
        ),
        deadline=deadline,
        interval=interval,
        sleep=sleep,
    )


def wait_image_ready(
    driver: Any,
    name: str,
    deadline: float,
    interval: float = POLL_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """images.get until READY; FAILED is GCE rejecting the disk."""
    path = f"/global/images/{name}"

    def rejected(image: dict[str, Any]) -> ProviderError | None:
        if image.get("status") != "FAILED":
            return None
        return ProviderError(
            f"GCE rejected image {name}",
            hint="the tar.gz must hold one bootable disk.raw of a whole number of GiB",
        )

    return poll(
        lambda: dict(call("image lookup", lambda: driver.connection.request(path).object)),
        done=lambda image: image.get("status") == "READY",
        failed=rejected,
        late=lambda image: ProviderError(
            f"GCE image {name} not ready in time (status {image.get('status')})"
        ),
        deadline=deadline,
        interval=interval,
        sleep=sleep,
    )


def firewalls_insert(driver: Any, name: str, ports: Sequence[int], tag: str, network: str) -> Any:
    """A firewall rule letting the health ports in to instances tagged ``tag``."""
    allowed = [{"IPProtocol": "tcp", "ports": [str(p) for p in sorted(set(ports))]}]
    return call(
        "firewall creation",
        lambda: driver.ex_create_firewall(
            name, allowed, network=network, source_ranges=["0.0.0.0/0"], target_tags=[tag]
        ),
    )


def instances_insert(
    driver: Any, body: dict[str, Any], zone: str, deadline: float, interval: float = POLL_INTERVAL
) -> Any:
    """instances.insert (``bodies.instance_body``), waited on; the instance as libcloud reads it.
    ``metadata`` carries ``user-data`` (read by cloud-init's GCE datasource) and ``ssh-keys``
    (read by the guest agent)."""
    what = f"creation of instance {body['name']}"
    operation = call(
        what,
        lambda: driver.connection.request(f"/zones/{zone}/instances", method="POST", data=body),
    ).object
    wait_operation(driver, dict(operation), what, deadline, interval)
    return call(
        f"lookup of instance {body['name']}", lambda: driver.ex_get_node(body["name"], zone)
    )


def serial_port_output(driver: Any, name: str, zone: str) -> str:
    path = f"/zones/{zone}/instances/{name}/serialPort"
    try:
        return str(driver.connection.request(path).object.get("contents", ""))
    except (BaseHTTPError, LibcloudError):
        return ""


def delete(driver: Any, what: str, path: str) -> bool:
    """DELETE a Compute resource by its path and wait for the operation; ``False`` when gone."""
    try:
        driver.connection.async_request(path, method="DELETE")
    except ResourceNotFoundError:
        return False
    except (GoogleBaseError, BaseHTTPError, LibcloudError) as exc:
        raise ProviderError(f"GCE deletion of {what} failed: {exc}") from exc
    return True
