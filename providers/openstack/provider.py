"""The openstack provider (Glance v2 + Nova + Neutron) and its rackspace profile.

openstack — upload: Glance create image (qcow2, bare, ``min_disk``, firmware and architecture
properties) recorded as soon as Glance names its id, then upload binary data — or, where the
cloud refuses a direct upload, the interoperable import (stage + ``glance-direct``);
register_image: poll until ``active``; create_nodes: a security group with one ingress rule per
guest port, then per node ``create_node`` with user-data on a config drive
(``ex_config_drive``), the configured network and key pair — from a volume of the image where
the flavor has no disk (``flavors.py``) — polled until ACTIVE, and a floating IP from the
configured pool when one is named.

rackspace — upload: the fixed VHD to Cloud Files (as a static large object of segments when
larger than one object may be, 5 GiB: ``cloudfiles.py``); register_image: a Glance ``import``
task from that object, polled; create_nodes as above without security group or floating IP
(Rackspace public cloud servers get a public address and filter nothing by default).

teardown: newest first — floating IPs, servers (waited until gone, so the group is free), their
boot volumes (deleted with the server; gone by then unless Nova failed to), security group,
image, object.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import LibcloudError
from libcloud.compute.base import Node, NodeImage, NodeSize
from libcloud.compute.drivers.openstack import OpenStackNetwork

from imagekit.errors import ProviderError, UsageError
from imagekit.providers import health
from imagekit.providers.base import (
    NodeInfo,
    NodeRequest,
    PreparedImage,
    Provider,
    Resource,
    Setting,
    UploadedImage,
)
from imagekit.providers.cloud.common import (
    endpoints,
    node_target,
    poll,
    read_secret,
    resource_name,
)
from imagekit.providers.limits import GiB, SizeLimit
from imagekit.providers.openstack import cloudfiles, flavors, glance
from imagekit.providers.runs import Run
from imagekit.providers.sizes import choose_fitting

#: Glance stores and checksums the upload before ``active``; a large image takes minutes.
IMAGE_TIMEOUT = 3600.0
#: A server from a local image is ACTIVE in about a minute; boot-from-volume clouds copy first.
SERVER_TIMEOUT = 900.0
REQUEST_TIMEOUT = 900.0  # seconds per HTTP request, the streamed upload included
AUTH_VERSION = "3.x_password"
#: How the image data reaches Glance: ``auto`` tries a direct upload and, refused, the import
#: flow; ``direct`` or ``import`` only that way (``import`` saves a refused transfer of the whole
#: image on a cloud known to take data only through import).
UPLOAD_MODES = ("auto", "direct", "import")
IMPORT_NOTE = "the interoperable import (stage, then glance-direct), not a direct upload"


class OpenStackProvider(Provider):
    name = "openstack"
    description = "OpenStack: Glance v2 image upload, Nova server with config-drive user-data"
    disk_format = "qcow2"
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting("auth_url", "Keystone URL, e.g. https://keystone:5000", env="OS_AUTH_URL"),
        Setting("project", "project (tenant) name", env="OS_PROJECT_NAME"),
        Setting("region", "region name", env="OS_REGION_NAME", required=False),
        Setting(
            "domain", "user domain (default: Default)", env="OS_USER_DOMAIN_NAME", required=False
        ),
        Setting(
            "project_domain",
            "domain id of the project (default: default)",
            env="OS_PROJECT_DOMAIN_ID",
            required=False,
        ),
        Setting(
            "image_upload",
            "how image data reaches Glance: auto (default), direct, or import (glance-direct)",
            env="IMAGEKIT_OS_IMAGE_UPLOAD",
            required=False,
        ),
        Setting("network", "network id for the servers", env="IMAGEKIT_OS_NETWORK", required=False),
        Setting(
            "floating_pool",
            "external network for floating IPs (none: no floating IP)",
            env="IMAGEKIT_OS_FLOATING_POOL",
            required=False,
        ),
        Setting("keypair", "Nova key pair to inject", env="IMAGEKIT_OS_KEYPAIR", required=False),
        Setting("username", "user name", env="OS_USERNAME", required=False, secret=True),
        Setting("password", "password", env="OS_PASSWORD", required=False, secret=True),
    )
    poll_interval = glance.POLL_INTERVAL
    auth_version = AUTH_VERSION
    user_env, secret_env = "OS_USERNAME", "OS_PASSWORD"
    uses_security_groups = True
    driver_class: ClassVar[type] = glance.GlanceNodeDriver

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        upload = self.settings.get("image_upload", "auto")
        if upload not in UPLOAD_MODES:
            raise UsageError(
                f"provider {self.name}: image_upload {upload!r}: use one of "
                f"{', '.join(UPLOAD_MODES)}"
            )
        self._driver: Any = None
        self._guest_ports: tuple[int, ...] = (22, 80)
        self._floating: dict[str, str] = {}  # node id → floating address
        self._min_disk = 1  # GiB: the prepared image's, once known (choose_size, upload)
        self._imported = False  # the data went through the import flow (register waits on it)

    # -- connection --------------------------------------------------------------------------

    def driver_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "ex_force_auth_url": self.settings["auth_url"],
            "ex_force_auth_version": self.auth_version,
            "ex_tenant_name": self.settings.get("project"),
            "ex_domain_name": self.settings.get("domain", "Default"),
            # Keystone v3 scopes the token to the project by name within this domain (an id).
            "ex_tenant_domain_id": self.settings.get("project_domain", "default"),
            "timeout": REQUEST_TIMEOUT,
        }
        if self.settings.get("region"):
            kwargs["ex_force_service_region"] = self.settings["region"]
        return kwargs

    def driver(self) -> Any:
        if self._driver is None:
            user = str(read_secret(self.name, self.user_env))
            secret = str(read_secret(self.name, self.secret_env))
            self._driver = self.driver_class(user, secret, **self.driver_kwargs())
        return self._driver

    def _images(self) -> Any:
        return self.driver().image_connection

    def _volumes(self) -> Any:
        """The block storage (Cinder v3) connection: boot volumes are deleted through it."""
        return self.driver().volumev3_connection

    # -- stages ------------------------------------------------------------------------------

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        name = resource_name(run.run_id, "image")
        fmt = {"qcow2": "qcow2", "raw": "raw", "vhd-azure": "vhd"}[image.disk_format]
        self._min_disk = flavors.min_disk_gib(image.virtual_size)
        properties = {
            "imagekit_run": run.run_id,
            **glance.image_properties(image.boot_mode, image.architecture),
        }
        conn = self._images()
        image_id = glance.images_create(conn, name, fmt, self._min_disk, properties)
        run.add_resource(Resource("image", image_id, name))
        mode = self.settings.get("image_upload", "auto")
        if mode != "import" and glance.images_upload(conn, image_id, image.path):
            return UploadedImage(image, image_id)
        methods = glance.import_methods(conn)
        if glance.GLANCE_DIRECT not in methods:
            raise ProviderError(
                f"Glance refused the direct upload of image {image_id}"
                if mode != "import"
                else f"Glance offers no {glance.GLANCE_DIRECT} import",
                hint=f"the cloud's import methods: {', '.join(methods) or 'none'}",
            )
        run.update(notes=(*run.record.notes, f"openstack: image data sent by {IMPORT_NOTE}"))
        glance.images_stage(conn, image_id, image.path)
        glance.images_import(conn, image_id)
        self._imported = True
        return UploadedImage(image, image_id)

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        deadline = time.monotonic() + IMAGE_TIMEOUT
        body = glance.wait_image_active(
            self._images(), image.location, deadline, self.poll_interval, importing=self._imported
        )
        return NodeImage(image.location, str(body.get("name", "")), self.driver())

    def choose_size(self, wanted: str | None, image: PreparedImage) -> tuple[NodeSize, str]:
        """The nearest flavor whose root disk holds the image (``min_disk``) or that boots from
        a volume (disk 0), a local disk first on a tie; a flavor named that is too small is
        refused before the upload."""
        min_disk = self._min_disk = flavors.min_disk_gib(image.virtual_size)
        return choose_fitting(
            self.list_sizes(),
            wanted,
            image.instance_type,
            usable=lambda sizes: flavors.usable(sizes, min_disk),
            check=lambda size: flavors.check_named(size, min_disk),
            none_usable=lambda: ProviderError(
                f"{self.name}: no flavor has a root disk of {min_disk} GiB or boots from a volume",
                hint="ask the cloud for a larger flavor, or one with disk 0",
            ),
            prefer=flavors.prefer_local_disk,
        )

    def list_sizes(self) -> list[NodeSize]:
        driver = self.driver()
        sizes = list(glance.call("flavor listing", driver.list_sizes))
        for size in sizes:
            # libcloud keeps a flavor's vCPUs as an attribute; the size mapping reads ``extra``.
            size.extra = {**(size.extra or {}), "vcpus": getattr(size, "vcpus", None)}
        return sizes

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        driver = self.driver()
        self._guest_ports = request.guest_ports
        groups = []
        if self.uses_security_groups:
            groups.append(self._security_group(driver, request, run))
        kwargs: dict[str, Any] = {
            "ex_userdata": request.user_data,
            "ex_config_drive": True,  # user-data without a metadata service
            "ex_metadata": {"imagekit_run": run.run_id},
        }
        if groups:
            kwargs["ex_security_groups"] = groups
        if self.settings.get("network"):
            kwargs["networks"] = [
                OpenStackNetwork(self.settings["network"], "", None, driver)  # type: ignore[no-untyped-call]
            ]
        if self.settings.get("keypair"):
            kwargs["ex_keyname"] = self.settings["keypair"]
        from_volume = flavors.boots_from_volume(request.size)
        if from_volume:
            # The flavor has no root disk: Nova makes one volume of the image per server.
            kwargs["ex_blockdevicemappings"] = flavors.block_device_mapping(
                image.id, self._min_disk
            )
        nodes = []
        for base in request.node_names():
            name = resource_name(base)
            node = glance.call(
                f"creation of server {name}",
                functools.partial(
                    driver.create_node,
                    name=name,
                    size=request.size,
                    image=None if from_volume else image,
                    **kwargs,
                ),
            )
            record = Resource("node", node.id, name)
            run.add_resource(record)
            node = self._wait_active(driver, node.id, name)
            if from_volume:
                self._record_volumes(node, record, run)
            if self.settings.get("floating_pool"):
                self._attach_floating_ip(driver, node, run)
            nodes.append(node)
        return nodes

    def _record_volumes(self, node: Node, record: Resource, run: Run) -> None:
        """Record the server's boot volume, then the server again, so that teardown deletes the
        server first (Nova then deletes the volume, ``delete_on_termination``) and the volume
        only if it is left."""
        for volume in (node.extra or {}).get("volumes_attached") or ():
            volume_id = str(volume.get("id", "")) if isinstance(volume, Mapping) else ""
            if volume_id:
                run.add_resource(Resource("volume", volume_id, f"{record.name}-root"))
        run.add_resource(record)  # moved after its volumes

    def _security_group(self, driver: Any, request: NodeRequest, run: Run) -> Any:
        name = resource_name(run.run_id, "sg")
        group = glance.call(
            "security group creation",
            lambda: driver.ex_create_security_group(name, f"imagekit run {run.run_id}"),
        )
        run.add_resource(Resource("security-group", group.id, name))
        for port in sorted(set(request.guest_ports)):
            glance.call(
                "security group rule creation",
                functools.partial(
                    driver.ex_create_security_group_rule, group, "tcp", port, port, "0.0.0.0/0"
                ),
            )
        return group

    def _wait_active(self, driver: Any, node_id: str, name: str) -> Node:
        def status(node: Node) -> str:
            return str((node.extra or {}).get("vm_state") or node.state)

        def failed(node: Node) -> ProviderError | None:
            if node.state != "error" and status(node) != "error":
                return None
            fault = (node.extra or {}).get("fault") or {}
            message = fault.get("message", "no reason given") if isinstance(fault, dict) else fault
            return glance.openstack_error(f"boot of server {name}", 0, str(message))

        active: Node = poll(
            lambda: glance.call("server lookup", lambda: driver.ex_get_node_details(node_id)),
            done=lambda node: node.state == "running" or status(node) == "active",
            failed=failed,
            late=lambda node: ProviderError(
                f"server {name} not ACTIVE in time (state {node.state})"
            ),
            deadline=time.monotonic() + SERVER_TIMEOUT,
            interval=self.poll_interval,
        )
        return active

    def _attach_floating_ip(self, driver: Any, node: Node, run: Run) -> None:
        pool = self.settings["floating_pool"]
        ip = glance.call("floating IP creation", lambda: driver.ex_create_floating_ip(pool))
        if ip is None:
            raise ProviderError(f"no floating IP pool named {pool!r}")
        run.add_resource(Resource("floating-ip", ip.id, ip.ip_address))
        glance.call(
            "floating IP association", lambda: driver.ex_attach_floating_ip_to_node(node, ip)
        )
        self._floating[str(node.id)] = ip.ip_address

    def _address(self, node: Node) -> str:
        if str(node.id) in self._floating:
            return self._floating[str(node.id)]
        return next(iter([*(node.public_ips or []), *(node.private_ips or [])]), "")

    def node_info(self, node: Node) -> NodeInfo:
        reached = endpoints(self._address(node), self._guest_ports)
        return NodeInfo(
            str(node.id), node.name, reached, str((node.extra or {}).get("flavorId", ""))
        )

    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        host = self._address(node)
        if not host:
            raise ProviderError(f"server {node.name} has no address to check")
        return node_target(node, host, self.ssh_user, run, console=lambda: self._console(node))

    def _console(self, node: Node) -> str | None:
        """The server's console log from Nova (``os-getConsoleOutput``): what ``serial:`` checks
        read, what a failure quotes, and where the host keys cloud-init prints come from, so an
        ``ssh:`` check pins them instead of trusting on first use. None where the cloud's policy
        refuses the call (some clouds do): then there is no console to read."""
        try:
            answer = self.driver().ex_get_console_output(node)
        except (BaseHTTPError, LibcloudError):
            return None
        output = (answer or {}).get("output") if isinstance(answer, Mapping) else None
        return None if output is None else str(output)

    # -- teardown ----------------------------------------------------------------------------

    def _paths(self, resource: Resource) -> tuple[Any, str]:
        driver = self.driver()
        kinds = {
            "node": (driver.connection, f"/servers/{resource.id}"),
            "floating-ip": (driver.network_connection, f"/v2.0/floatingips/{resource.id}"),
            "security-group": (driver.network_connection, f"/v2.0/security-groups/{resource.id}"),
            "image": (driver.image_connection, f"/v2/images/{resource.id}"),
            "volume": (self._volumes(), f"/volumes/{resource.id}"),
        }
        if resource.kind not in kinds:
            raise ProviderError(f"{self.name} cannot delete a {resource.kind!r}")
        return kinds[resource.kind]

    def delete(self, resource: Resource) -> bool:
        conn, path = self._paths(resource)
        try:
            conn.request(path, method="DELETE")
        except BaseHTTPError as exc:
            if exc.code == 404:
                return False
            raise glance.openstack_error(
                f"deletion of {resource}", exc.code, str(exc.message)
            ) from exc
        if resource.kind == "node":
            self._wait_gone(conn, path, str(resource))
        return True

    def _wait_gone(self, conn: Any, path: str, what: str) -> None:
        # A security group in use by a server being deleted cannot go yet: wait for the server.
        poll(
            lambda: self._exists(conn, path),
            done=lambda present: not present,
            late=lambda _: ProviderError(f"{what} still there after its deletion", transient=True),
            deadline=time.monotonic() + SERVER_TIMEOUT,
            interval=self.poll_interval,
        )

    @staticmethod
    def _exists(conn: Any, path: str) -> bool:
        try:
            answer = conn.request(path)
        except BaseHTTPError as exc:
            if exc.code == 404:
                return False
            raise glance.openstack_error(f"lookup of {path}", exc.code, str(exc.message)) from exc
        # Cloud Files answers (libcloud) take a 404 for a success: not there all the same.
        return int(getattr(answer, "status", 200)) != 404

    def exists(self, resource: Resource) -> bool:
        return self._exists(*self._paths(resource))

    # -- dry run -----------------------------------------------------------------------------

    def planned_calls(self, request: NodeRequest, run_id: str) -> list[str]:
        """The cloud calls a boot would make, in order, without making any."""
        calls = [
            f"POST /v2/images {resource_name(run_id, 'image')} ({self.disk_format}, bare)",
            "PUT /v2/images/{id}/file (application/octet-stream); refused: PUT "
            "/v2/images/{id}/stage + POST /v2/images/{id}/import (glance-direct)",
            "GET /v2/images/{id} until active",
        ]
        if self.uses_security_groups:
            calls.append(f"POST /v2.0/security-groups {resource_name(run_id, 'sg')}")
            calls += [f"POST /v2.0/security-group-rules tcp:{p}" for p in request.guest_ports]
        for base in request.node_names():
            calls.append(f"POST /servers {resource_name(base)} ({request.size.id}, user_data)")
            if self.settings.get("floating_pool"):
                calls.append(f"POST /v2.0/floatingips ({self.settings['floating_pool']})")
        return calls


class RackspaceProvider(OpenStackProvider):
    """The Rackspace profile: VHD via Cloud Files and a Glance import task."""

    name = "rackspace"
    description = "Rackspace: VHD imported from Cloud Files by a Glance task, Nova server"
    disk_format = "vhd-azure"  # a fixed VHD: what Rackspace's image import takes
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting("region", "region, e.g. DFW, ORD, IAD, LON", env="RACKSPACE_REGION"),
        Setting(
            "container",
            "Cloud Files container for the upload (default: imagekit)",
            env="RACKSPACE_CONTAINER",
            required=False,
        ),
        Setting("keypair", "key pair to inject", env="RACKSPACE_KEYPAIR", required=False),
        Setting("username", "user name", env="RACKSPACE_USERNAME", required=False, secret=True),
        Setting("api_key", "API key", env="RACKSPACE_API_KEY", required=False, secret=True),
    )
    auth_version = "2.0_apikey"
    user_env, secret_env = "RACKSPACE_USERNAME", "RACKSPACE_API_KEY"
    uses_security_groups = False
    driver_class: ClassVar[type] = glance.RackspaceNodeDriver
    auth_url = "https://identity.api.rackspacecloud.com"
    size_limits: ClassVar[tuple[SizeLimit, ...]] = (
        SizeLimit(
            160 * GiB,
            "an imported image's system disk",
            "Rackspace Cloud Images: images must not expand to a system disk larger than 160 GB",
        ),
    )
    #: Files above ``object_limit`` go up as a static large object of ``segment_size`` segments.
    object_limit: ClassVar[int] = cloudfiles.OBJECT_LIMIT
    segment_size: ClassVar[int] = cloudfiles.SEGMENT_SIZE

    def driver_kwargs(self) -> dict[str, Any]:
        return {
            "ex_force_auth_url": self.auth_url,
            "ex_force_auth_version": self.auth_version,
            "ex_force_service_region": self.settings["region"],
            "timeout": REQUEST_TIMEOUT,
        }

    def files(self) -> Any:
        from libcloud.storage.drivers.cloudfiles import CloudFilesStorageDriver

        user = str(read_secret(self.name, self.user_env))
        key = str(read_secret(self.name, self.secret_env))
        return CloudFilesStorageDriver(  # type: ignore[no-untyped-call]
            user, key, region=self.settings["region"].lower(), timeout=REQUEST_TIMEOUT
        )

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        container = self.settings.get("container", "imagekit")
        name = f"{run.run_id}.vhd"
        files = self.files()
        size = image.path.stat().st_size
        if size <= self.object_limit:
            run.add_resource(self._object(container, name))
            cloudfiles.put_object(glance.call, files.connection, container, name, image.path)
            return UploadedImage(image, f"{container}/{name}")
        # Larger than one object: a static large object. Each segment is recorded before it is
        # sent, the manifest last, so teardown deletes the manifest (and with it the segments)
        # first and finds each segment already gone, or deletes what a crash left unlisted.
        uploaded = []
        with image.path.open("rb") as handle:
            for segment in cloudfiles.segments(name, size, self.segment_size):
                run.add_resource(self._object(container, segment.name))
                etag = cloudfiles.put_segment(
                    glance.call, files.connection, container, segment, handle
                )
                uploaded.append((segment, etag))
        run.add_resource(self._object(container, name, slo=True))
        body = cloudfiles.manifest(container, uploaded)
        cloudfiles.put_manifest(glance.call, files.connection, container, name, body)
        run.update(
            notes=(
                *run.record.notes,
                f"rackspace: {size} bytes uploaded as a static large object of "
                f"{len(uploaded)} segments (one Cloud Files object holds at most 5 GiB)",
            )
        )
        return UploadedImage(image, f"{container}/{name}")

    @staticmethod
    def _object(container: str, name: str, *, slo: bool = False) -> Resource:
        extra = {"container": container, **({"slo": "manifest"} if slo else {})}
        return Resource("object", f"{container}/{name}", name, extra)

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        name = resource_name(run.run_id, "image")
        task = glance.tasks_import(self._images(), image.location, name, "vhd")
        deadline = time.monotonic() + IMAGE_TIMEOUT
        image_id = glance.wait_task(self._images(), task, deadline, self.poll_interval)
        run.add_resource(Resource("image", image_id, name))
        body = glance.wait_image_active(self._images(), image_id, deadline, self.poll_interval)
        return NodeImage(image_id, str(body.get("name", name)), self.driver())

    def delete(self, resource: Resource) -> bool:
        if resource.kind != "object":
            return super().delete(resource)
        # A manifest is deleted with its segments (multipart-manifest=delete).
        params = dict(cloudfiles.SLO_DELETE) if resource.extra.get("slo") else None
        try:
            answer = self.files().connection.request(
                f"/{resource.id}", params=params, method="DELETE"
            )
        except BaseHTTPError as exc:
            if exc.code == 404:
                return False
            raise glance.openstack_error(
                f"deletion of {resource}", exc.code, str(exc.message)
            ) from exc
        # libcloud's Cloud Files responses count 404 as a success: it is "already gone" here.
        return int(getattr(answer, "status", 204)) != 404

    def exists(self, resource: Resource) -> bool:
        if resource.kind != "object":
            return super().exists(resource)
        return self._exists(self.files().connection, f"/{resource.id}")

    def planned_calls(self, request: NodeRequest, run_id: str) -> list[str]:
        container = self.settings.get("container", "imagekit")
        calls = [
            f"PUT cloudFiles /{container}/{run_id}.vhd (above 5 GiB: segments "
            f"{run_id}.vhd.segments/NNNNN, then the manifest ?multipart-manifest=put)",
            f"POST /v2/tasks import {container}/{run_id}.vhd (vhd)",
            "GET /v2/tasks/{id} until success, GET /v2/images/{id} until active",
        ]
        return calls + super().planned_calls(request, run_id)[3:]
