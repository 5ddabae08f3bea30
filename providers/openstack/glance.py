"""Glance v2 image upload and import, which libcloud 3.9.1's image connection cannot do.

libcloud's ``OpenStack_2_ImageConnection`` reads, patches and deletes images, but its
``request`` forces a JSON content type and ``encode_data`` JSON-encodes every body. The calls
here (Image service API v2, https://docs.openstack.org/api-ref/image/v2/):

- Create image — ``POST /v2/images`` with ``name``, ``disk_format``, ``container_format: bare``;
- Upload binary image data — ``PUT /v2/images/{id}/file``, ``Content-Type:
  application/octet-stream``, the file streamed as the body;
- Interoperable image import (Image API 2.6+), for clouds that refuse the upload above: Import
  methods and values discovery — ``GET /v2/info/import``; Stage binary image data — ``PUT
  /v2/images/{id}/stage`` (octet-stream); Import an image — ``POST /v2/images/{id}/import`` with
  ``{"method": {"name": "glance-direct"}}``; a failed import leaves the image ``queued`` with the
  store in ``os_glance_failed_import``, and its reason in the import task (Show image tasks —
  ``GET /v2/images/{id}/tasks``, API 2.12+);
- Show image — ``GET /v2/images/{id}``, polled until ``status`` is ``active`` (or ``killed``);
- Create task — ``POST /v2/tasks`` of type ``import``: Glance fetches the image from a Swift
  (Cloud Files) URL itself; Rackspace takes VHDs this way. Show task — ``GET /v2/tasks/{id}``.
- Delete image — ``DELETE /v2/images/{id}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.openstack import OpenStackBaseConnection
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute.drivers.openstack import (
    OpenStack_2_Connection,
    OpenStack_2_ImageConnection,
    OpenStack_2_NodeDriver,
    OpenStack_2_VolumeV3Connection,
)

from imagekit.errors import ProviderError
from imagekit.providers.cloud.common import poll

OCTET = "application/octet-stream"
#: What Glance takes from us; the convert target of the same name produces each.
DISK_FORMATS = frozenset({"raw", "qcow2", "vhd"})
POLL_INTERVAL = 5.0  # seconds between looks at an image or task: Glance moves in seconds
#: Answers to a direct upload (PUT /file) that mean "not this way here": the policy forbids it
#: (403), the call is disabled (405), the image is not in a state for it (409, e.g. created for
#: import only), or the cloud takes data only through import (415).
UPLOAD_REFUSED = frozenset({403, 405, 409, 415})
GLANCE_DIRECT = "glance-direct"
#: Glance's name of each architecture imagekit knows (the ``architecture`` image property).
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}


class GlanceConnection(OpenStack_2_ImageConnection):
    """The image connection, able to send a file as ``application/octet-stream``."""

    def encode_data(self, data: Any) -> Any:
        if isinstance(data, bytes | bytearray) or hasattr(data, "read"):
            return data
        return super().encode_data(data)  # type: ignore[no-untyped-call]

    def request(  # type: ignore[override]  # libcloud's OpenStack signature, not Connection's
        self,
        action: str,
        params: Any = None,
        data: Any = "",
        headers: Any = None,
        method: str = "GET",
        raw: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if headers.get("Content-Type") == OCTET:
            # Skip OpenStackBaseConnection.request, which would overwrite the content type.
            return super(OpenStackBaseConnection, self).request(  # type: ignore[no-untyped-call]
                action, params=params or {}, data=data, headers=headers, method=method, raw=raw
            )
        return super().request(action, params, data, headers, method, raw)  # type: ignore[no-untyped-call]


class GlanceNodeDriver(OpenStack_2_NodeDriver):
    image_connectionCls = GlanceConnection


class RackspaceComputeConnection(OpenStack_2_Connection):
    service_name = "cloudServersOpenStack"  # type: ignore[assignment]  # the name of Nova in Rackspace's catalog


class RackspaceImageConnection(GlanceConnection):
    service_name = "cloudImages"  # type: ignore[assignment]  # the name of Glance in Rackspace's catalog


class RackspaceVolumeConnection(OpenStack_2_VolumeV3Connection):
    service_type = "volume"  # type: ignore[assignment]  # Cloud Block Storage's type and name
    service_name = "cloudBlockStorage"  # type: ignore[assignment]


class RackspaceNodeDriver(GlanceNodeDriver):
    """The v2 driver on Rackspace's catalog names (libcloud looks endpoints up by name)."""

    connectionCls = RackspaceComputeConnection  # type: ignore[assignment]
    image_connectionCls = RackspaceImageConnection
    volumev3_connectionCls = RackspaceVolumeConnection


def call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except InvalidCredsError as exc:
        raise ProviderError(
            f"OpenStack refused the credentials ({what})",
            hint="check OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME",
        ) from exc
    except BaseHTTPError as exc:
        raise openstack_error(what, exc.code, str(exc.message)) from exc
    except LibcloudError as exc:
        raise ProviderError(f"OpenStack {what} failed: {exc.value}") from exc


def openstack_error(what: str, status: int, message: str) -> ProviderError:
    if status == 413 or "quota" in message.lower() or "exceeded" in message.lower():
        return ProviderError(
            f"OpenStack quota refused {what}: {message}",
            hint="raise the project's quota (images, instances, cores, RAM, floating IPs)",
        )
    if status in (401, 403):
        return ProviderError(
            f"OpenStack denied {what}: {message}", hint="the user needs the member role"
        )
    return ProviderError(f"OpenStack {what} failed: {message}", transient=status >= 500)


def firmware_properties(boot_mode: str) -> dict[str, str]:
    """Image properties Nova reads to pick the firmware: without ``hw_firmware_type=uefi`` a
    UEFI-only image boots through SeaBIOS and finds nothing to boot."""
    return {"hw_firmware_type": "uefi", "hw_machine_type": "q35"} if boot_mode == "uefi" else {}


def image_properties(boot_mode: str, architecture: str) -> dict[str, str]:
    """The properties Nova's scheduler and hypervisor read: the firmware and the architecture
    (``ImagePropertiesFilter`` keeps an aarch64 image off x86-64 hosts)."""
    return {**firmware_properties(boot_mode), "architecture": ARCHITECTURES[architecture]}


def images_create(
    conn: Any, name: str, disk_format: str, min_disk_gb: int, tags: dict[str, str]
) -> str:
    """Create image: the record only, status ``queued``; returns its id."""
    body = {
        "name": name,
        "disk_format": disk_format,
        "container_format": "bare",
        "visibility": "private",
        "min_disk": min_disk_gb,
        **tags,
    }
    response = call("image creation", lambda: conn.request("/v2/images", "", body, {}, "POST"))
    return str(response.object["id"])


def images_upload(conn: Any, image_id: str, path: Path) -> bool:
    """Upload binary image data, the file streamed; ``False`` when the cloud refuses a direct
    upload (``UPLOAD_REFUSED``) and takes data only through the import flow."""

    def put() -> bool:
        try:
            with path.open("rb") as body:
                conn.request(
                    f"/v2/images/{image_id}/file",
                    data=body,
                    headers={"Content-Type": OCTET},
                    method="PUT",
                )
        except BaseHTTPError as exc:
            if exc.code in UPLOAD_REFUSED:
                return False
            raise
        return True

    return bool(call("image upload", put))


def import_methods(conn: Any) -> list[str]:
    """Import methods and values discovery; none on a Glance older than API 2.6 (404)."""
    try:
        answer = conn.request("/v2/info/import")
    except BaseHTTPError as exc:
        if exc.code == 404:
            return []
        raise openstack_error("import method discovery", exc.code, str(exc.message)) from exc
    methods = (answer.object or {}).get("import-methods") or {}
    return [str(m) for m in methods.get("value") or []]


def images_stage(conn: Any, image_id: str, path: Path) -> None:
    """Stage binary image data (the file streamed into Glance's staging area)."""
    with path.open("rb") as body:
        call(
            "image staging",
            lambda: conn.request(
                f"/v2/images/{image_id}/stage",
                data=body,
                headers={"Content-Type": OCTET},
                method="PUT",
            ),
        )


def images_import(conn: Any, image_id: str) -> None:
    """Import an image: Glance moves the staged data into its store (``glance-direct``)."""
    body = {"method": {"name": GLANCE_DIRECT}}
    call(
        "image import",
        lambda: conn.request(f"/v2/images/{image_id}/import", "", body, {}, "POST"),
    )


def import_failure(conn: Any, image_id: str) -> str:
    """Why the image's import failed, from its newest failed task (Show image tasks); "" where
    the cloud does not say (API older than 2.12, or the call is refused)."""
    try:
        answer = conn.request(f"/v2/images/{image_id}/tasks")
    except (BaseHTTPError, LibcloudError):
        return ""
    tasks = [t for t in (answer.object or {}).get("tasks") or [] if t.get("status") == "failure"]
    tasks.sort(key=lambda t: str(t.get("updated_at") or t.get("created_at") or ""))
    return str(tasks[-1].get("message") or "") if tasks else ""


def images_show(conn: Any, image_id: str) -> dict[str, Any]:
    return dict(call("image lookup", lambda: conn.request(f"/v2/images/{image_id}")).object)


def images_delete(conn: Any, image_id: str) -> bool:
    """Delete image; ``False`` when it was already gone."""
    try:
        conn.request(f"/v2/images/{image_id}", method="DELETE")
    except BaseHTTPError as exc:
        if exc.code == 404:
            return False
        raise openstack_error("image deletion", exc.code, str(exc.message)) from exc
    return True


def wait_image_active(
    conn: Any,
    image_id: str,
    deadline: float,
    interval: float = POLL_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
    *,
    importing: bool = False,
) -> dict[str, Any]:
    """Poll Show image until ``active``; ``killed``/``deleted`` means Glance rejected it. After
    an import (``importing``), a store named in ``os_glance_failed_import`` or a return to
    ``queued`` (Glance's revert) is the import failing: its reason is quoted from the task."""

    def rejected(image: dict[str, Any]) -> ProviderError | None:
        status = image.get("status")
        if status in ("killed", "deleted", "deactivated"):
            return ProviderError(
                f"Glance rejected image {image_id} (status {status})",
                hint="is the disk format right? (qcow2 without backing file, raw, vhd)",
            )
        failed_stores = str(image.get("os_glance_failed_import") or "")
        if importing and (failed_stores or status == "queued"):
            reason = import_failure(conn, image_id) or "no reason given"
            where = f" to store {failed_stores}" if failed_stores else ""
            return ProviderError(
                f"Glance import of image {image_id}{where} failed: {reason}",
                hint="is the disk format right? (qcow2 without backing file, raw, vhd)",
            )
        return None

    return poll(
        lambda: images_show(conn, image_id),
        done=lambda image: image.get("status") == "active",
        failed=rejected,
        late=lambda image: ProviderError(
            f"Glance image {image_id} not active in time (status {image.get('status')})"
        ),
        deadline=deadline,
        interval=interval,
        sleep=sleep,
    )


def tasks_import(conn: Any, source_url: str, name: str, disk_format: str) -> str:
    """Create task of type ``import``: Glance copies the image from ``source_url`` itself."""
    body = {
        "type": "import",
        "input": {
            "import_from": source_url,
            "import_from_format": disk_format,
            "image_properties": {"name": name, "disk_format": disk_format},
        },
    }
    response = call("import task creation", lambda: conn.request("/v2/tasks", "", body, {}, "POST"))
    return str(response.object["id"])


def wait_task(
    conn: Any,
    task_id: str,
    deadline: float,
    interval: float = POLL_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll Show task until ``success`` (returns the new image id) or ``failure``."""

    def rejected(task: dict[str, Any]) -> ProviderError | None:
        if task.get("status") != "failure":
            return None
        return ProviderError(
            f"the image import was rejected: {task.get('message') or 'no reason given'}",
            hint="Rackspace imports a fixed or dynamic VHD with a Xen-ready guest",
        )

    task = poll(
        lambda: call("import task lookup", lambda: conn.request(f"/v2/tasks/{task_id}")).object,
        done=lambda task: task.get("status") == "success",
        failed=rejected,
        late=lambda task: ProviderError(
            f"import task {task_id} not done in time (status {task.get('status')})"
        ),
        deadline=deadline,
        interval=interval,
        sleep=sleep,
    )
    return str((task.get("result") or {})["image_id"])
