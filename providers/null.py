"""The ``null`` provider: boots nothing, records every call — the contract's test double.

Its "cloud" is a folder (``<state dir>/null``) holding one empty file per resource, so a
teardown from another provider instance (another process) finds what a boot created, exactly
as with a real cloud. Settings steer it for contract tests:

- ``console``: the text its nodes' serial console shows (for ``serial:`` checks);
- ``endpoint``: ``HOST:PORT`` every guest port answers at (point it at a real test server);
- ``fail_at``: a stage (``upload``, ``register_image``, ``create_nodes``, ``delete``) that fails
  with a ``ProviderError`` — in ``create_nodes`` after the first node exists.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from libcloud.compute.base import Node, NodeImage, NodeSize
from libcloud.compute.drivers.dummy import DummyNodeDriver
from libcloud.compute.types import NodeState

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
from imagekit.providers.runs import Run
from imagekit.providers.userdata import load_keys

# Sizes shaped like a cloud's (id, vCPUs, MiB), so size mapping is exercised.
SIZES = (("null-small", 1, 2048), ("null-medium", 2, 4096), ("null-large", 4, 16384))
STAGES = ("upload", "register_image", "create_nodes", "delete")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


class NullProvider(Provider):
    name: ClassVar[str] = "null"
    description: ClassVar[str] = "creates nothing and records calls: for contract tests"
    disk_format: ClassVar[str] = "raw"
    default_checks: ClassVar[tuple[str, ...]] = ()
    adapt_default: ClassVar[bool] = False  # it boots nothing
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting("console", "serial console text of every node", required=False),
        Setting("endpoint", "HOST:PORT every guest port answers at", required=False),
        Setting("fail_at", f"a stage to fail in: {', '.join(STAGES)}", required=False),
    )

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        fail_at = self.settings.get("fail_at")
        if fail_at is not None and fail_at not in STAGES:
            raise UsageError(f"null provider: fail_at {fail_at!r}: one of {STAGES}")
        self.world = self.state_dir / "null"
        # libcloud value objects name their driver; this one stands in (no calls are made).
        self.driver = DummyNodeDriver(0)  # type: ignore[no-untyped-call]
        self.calls: list[str] = []

    # -- the fake cloud -------------------------------------------------------------------

    def _path(self, kind: str, resource_id: str) -> Path:
        if not _ID.match(resource_id) or not _ID.match(kind):
            raise ProviderError(f"null provider: bad {kind} id {resource_id!r}")
        return self.world / kind / resource_id

    def _create(self, kind: str, name: str, run: Run) -> Resource:
        resource = Resource(kind, f"{name}-{secrets.token_hex(3)}", name)
        path = self._path(kind, resource.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        run.add_resource(resource)
        return resource

    def _maybe_fail(self, stage: str) -> None:
        if self.settings.get("fail_at") == stage:
            raise ProviderError(f"null provider: injected failure in {stage}")

    # -- stages ---------------------------------------------------------------------------

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        self.calls.append(f"upload {image.path.name}")
        self._maybe_fail("upload")
        obj = self._create("object", "upload", run)
        return UploadedImage(image, f"null://{obj.id}")

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        self.calls.append(f"register_image {image.location}")
        self._maybe_fail("register_image")
        res = self._create("image", "image", run)
        return NodeImage(
            res.id, image.prepared.name, self.driver, extra={"location": image.location}
        )

    def list_sizes(self) -> list[NodeSize]:
        return [
            NodeSize(i, i, ram, 10, None, 0.0, self.driver, extra={"vcpus": cpus})
            for i, cpus, ram in SIZES
        ]

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        self.calls.append(f"create_nodes {request.count} x {request.size.id}")
        nodes = []
        for name in request.node_names():
            res = self._create("node", name, run)
            ports = {p: p for p in request.guest_ports}
            nodes.append(
                Node(res.id, name, NodeState.RUNNING, [], [], self.driver, extra={"ports": ports})
            )
            self._maybe_fail("create_nodes")
        return nodes

    def node_info(self, node: Node) -> NodeInfo:
        host, port = self._endpoint(0)
        endpoints = tuple(Endpoint(g, host, port or g) for g in sorted(node.extra.get("ports", {})))
        return NodeInfo(str(node.id), node.name, endpoints)

    def _endpoint(self, guest_port: int) -> tuple[str, int]:
        host, _, port = self.settings.get("endpoint", "127.0.0.1:").rpartition(":")
        return host, int(port) if port else guest_port

    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        self.calls.append(f"health_target {node.name}")
        keys = load_keys(run.ssh_dir)
        console = self.settings.get("console")
        return health.HealthTarget(
            name=node.name,
            endpoint=self._endpoint,
            console=lambda: console,
            gone=lambda: None if self._path("node", str(node.id)).exists() else "node deleted",
            ssh=health.SshAccess(self.ssh_user, keys.private_key, keys.host_public),
        )

    # -- teardown -------------------------------------------------------------------------

    def delete(self, resource: Resource) -> bool:
        self.calls.append(f"delete {resource.kind} {resource.id}")
        self._maybe_fail("delete")
        path = self._path(resource.kind, resource.id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def exists(self, resource: Resource) -> bool:
        return self._path(resource.kind, resource.id).exists()


__all__ = ["NullProvider"]
