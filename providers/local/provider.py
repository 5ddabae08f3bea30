"""The ``local`` provider: the contract over ``QemuNodeDriver`` (QEMU on this machine).

prepare: restore + convert to qcow2 in the run folder · upload: nothing (the file is here) ·
register_image: an image entry pointing at that file · create_nodes: one detached QEMU per node
with a NoCloud seed · health: serial console, forwarded ports on 127.0.0.1, SSH with the host
key the seed offered pinned · teardown: stop each QEMU (pid verified), delete its files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from libcloud.compute.base import Node, NodeImage, NodeSize

from imagekit.errors import ProviderError, UsageError
from imagekit.providers import health
from imagekit.providers.base import (
    Endpoint,
    NodeInfo,
    NodeRequest,
    PreparedImage,
    Provider,
    Resource,
    Setting,
    UploadedImage,
)
from imagekit.providers.local.driver import HOST, QemuNodeDriver
from imagekit.providers.local.qemu import ACCEL_ENV, Accel
from imagekit.providers.runs import Run
from imagekit.providers.userdata import load_keys


class LocalProvider(Provider):
    name: ClassVar[str] = "local"
    description: ClassVar[str] = "QEMU on this machine (rehearsals, tests); ports on 127.0.0.1"
    # qcow2: QEMU's own format, so a rehearsal exercises a real conversion cheaply.
    disk_format: ClassVar[str] = "qcow2"
    # The fast bench (demo, rehearsals of test disks): a boot adapts its guest when asked
    # (--adapt); the twins, which stand for clouds, adapt by default.
    adapt_default: ClassVar[bool] = False
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "accel",
            "tcg or kvm (default: kvm only when a hardware KVM module is loaded and a probe "
            "boot works, else tcg)",
            env=ACCEL_ENV,
            required=False,
        ),
    )

    # The host key the run offers in its user-data is the one SSH pins; a provider whose guests
    # make their own (Azure's agent) pins what the console shows instead, as on the cloud.
    pin_offered_host_key: ClassVar[bool] = True

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        accel = self.settings.get("accel")
        if accel not in (None, "tcg", "kvm"):
            raise UsageError(f"local provider: accel {accel!r}: use tcg or kvm")
        chosen: Accel | None = "kvm" if accel == "kvm" else "tcg" if accel == "tcg" else None
        self.driver = QemuNodeDriver(self.state_dir / "local", accel=chosen)

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        return UploadedImage(image, str(image.path))

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        prepared = image.prepared
        node_image = self.driver.ex_register_image(
            prepared.name,
            prepared.path,
            prepared.disk_format,
            prepared.extra_disks,
            firmware=prepared.boot_mode,
        )
        run.add_resource(Resource("image", node_image.id, prepared.name))
        return node_image

    def list_sizes(self) -> list[NodeSize]:
        sizes: list[NodeSize] = self.driver.list_sizes()
        return sizes

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        nodes = []
        for name in request.node_names():
            node = self.driver.create_node(
                name,
                request.size,
                image,
                ex_user_data=request.user_data,
                ex_guest_ports=request.guest_ports,
            )
            run.add_resource(Resource("node", str(node.id), node.name))
            nodes.append(node)
        return nodes

    def node_info(self, node: Node) -> NodeInfo:
        ports: dict[int, int] = node.extra["ports"]
        endpoints = tuple(Endpoint(g, HOST, h) for g, h in sorted(ports.items()))
        return NodeInfo(str(node.id), node.name, endpoints, str(node.extra.get("size", "")))

    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        ports: dict[int, int] = node.extra["ports"]

        def endpoint(guest_port: int) -> tuple[str, int]:
            if guest_port not in ports:
                raise UsageError(f"guest port {guest_port} is not forwarded (add --port)")
            return HOST, ports[guest_port]

        def gone() -> str | None:
            reason = self.driver.ex_exit_reason(node)
            return None if reason is None else f"QEMU exited: {reason}"

        keys = load_keys(run.ssh_dir) if run.ssh_dir.is_dir() else None
        ssh = (
            health.SshAccess(
                self.ssh_user,
                keys.private_key,
                keys.host_public if self.pin_offered_host_key else None,
            )
            if keys is not None
            else None
        )
        return health.HealthTarget(
            name=node.name,
            endpoint=endpoint,
            console=lambda: self.driver.ex_serial_output(node),
            gone=gone,
            ssh=ssh,
            # QEMU's user-mode NAT accepts a forwarded connection before the guest does.
            connect_proves_listener=False,
        )

    def delete(self, resource: Resource) -> bool:
        if resource.kind == "node":
            node = self.driver.ex_get_node(resource.id)
            return node is not None and bool(self.driver.destroy_node(node))
        if resource.kind == "image":
            image = self.driver.ex_get_image(resource.id)
            return image is not None and bool(self.driver.delete_image(image))
        raise ProviderError(f"local provider: cannot delete a {resource.kind!r}")

    def exists(self, resource: Resource) -> bool:
        if resource.kind == "node":
            return self.driver.ex_get_node(resource.id) is not None
        if resource.kind == "image":
            return self.driver.ex_get_image(resource.id) is not None
        return False


__all__ = ["LocalProvider"]
