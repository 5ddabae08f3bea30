"""A libcloud ``NodeDriver`` whose "cloud" is QEMU processes on this machine.

libcloud's libvirt driver cannot create nodes, so this driver implements the compute calls the
providers use — ``list_sizes``, ``list_images``, ``create_node``, ``list_nodes``,
``destroy_node`` — over QEMU processes, and returns libcloud's own value objects. Extras are
``ex_``-prefixed, as in libcloud.

State lives under ``root`` (the local provider uses ``<state dir>/local``)::

    images/<image-id>.json     a registered image: the disk file and its format
    nodes/<node-id>/node.json  a node: pid, forwarded ports, disk, size, image
    nodes/<node-id>/           its serial log, QEMU's pid file and stderr, its NoCloud seed

Networking is QEMU user-mode (no root, no bridges), restricted to port forwards from
127.0.0.1: a node answers at ``127.0.0.1:<host port>`` for each exposed guest port.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libcloud.compute.base import (
    Node,
    NodeAuthPassword,
    NodeAuthSSHKey,
    NodeDriver,
    NodeImage,
    NodeLocation,
    NodeSize,
)
from libcloud.compute.types import NodeState

from imagekit.convert import TARGETS
from imagekit.errors import ProviderError, UsageError
from imagekit.providers.local import process
from imagekit.providers.local.qemu import (
    Accel,
    VMSpec,
    detect_accel,
    firmware_argv,
    qemu_argv,
    tail,
)
from imagekit.providers.local.seed import build_seed, ssh_cloud_config

HOST = "127.0.0.1"
# Local sizes: (id, vCPUs, MiB). Small on purpose: rehearsals boot several nodes on one host,
# and under emulation more vCPUs rarely help. QEMU allocates guest memory lazily.
SIZES: tuple[tuple[str, int, int], ...] = (
    ("local-256m", 1, 256),
    ("local-512m", 1, 512),
    ("local-1g", 1, 1024),
    ("local-2g", 2, 2048),
    ("local-4g", 2, 4096),
    ("local-8g", 4, 8192),
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # also a valid hostname label


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProviderError(f"{path}: unreadable ({exc})") from exc
    return doc


class QemuNodeDriver(NodeDriver):
    name = "Local QEMU"
    website = "https://www.qemu.org/"
    type = "imagekit-local"
    features = {"create_node": ["ssh_key"]}  # noqa: RUF012  (libcloud's declaration)

    def __init__(self, root: Path, accel: Accel | None = None):
        # No HTTP connection to set up, so BaseDriver.__init__ is not called (as libcloud's
        # dummy driver does).
        self.root = Path(root)
        self.accel = accel

    @property
    def _images(self) -> Path:
        return self.root / "images"

    @property
    def _nodes(self) -> Path:
        return self.root / "nodes"

    # -- sizes and images ---------------------------------------------------------------

    def list_sizes(self, location: Any = None) -> list[NodeSize]:
        return [
            NodeSize(size_id, size_id, ram, 0, None, 0.0, self, extra={"vcpus": cpus})
            for size_id, cpus, ram in SIZES
        ]

    def _image(self, image_id: str, doc: dict[str, Any]) -> NodeImage:
        return NodeImage(image_id, doc["name"], self, extra=doc)

    def list_images(self, location: Any = None) -> list[NodeImage]:
        images = []
        for path in sorted(self._images.glob("*.json")):
            doc = _read_json(path)
            if doc is not None:
                images.append(self._image(path.stem, doc))
        return images

    def ex_register_image(
        self,
        name: str,
        disk: Path,
        disk_format: str,
        extra_disks: Sequence[Path] = (),
        firmware: str = "bios",
    ) -> NodeImage:
        """Register a disk file (a convert target's output) as a bootable image; ``firmware``
        (``bios`` or ``uefi``) is what its nodes boot with."""
        if firmware not in ("bios", "uefi"):
            raise UsageError(f"unknown firmware {firmware!r}: bios or uefi")
        if disk_format not in TARGETS or disk_format == "gce":  # gce is a tar.gz, not a disk
            raise UsageError(f"local images cannot be {disk_format!r}: use raw, qcow2, vmdk…")
        for path in (disk, *extra_disks):
            if not Path(path).is_file():
                raise UsageError(f"{path}: no such disk file")
        self._images.mkdir(parents=True, exist_ok=True)
        image_id = (
            f"{re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')[:40]}-{secrets.token_hex(4)}"
        )
        doc = {
            "name": name,
            "disk": str(Path(disk).resolve()),
            "disk_format": disk_format,
            "extra_disks": [str(Path(p).resolve()) for p in extra_disks],
            "firmware": firmware,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        _write_json(self._images / f"{image_id}.json", doc)
        return self._image(image_id, doc)

    def ex_get_image(self, image_id: str) -> NodeImage | None:
        if not _NAME.match(image_id):
            return None
        doc = _read_json(self._images / f"{image_id}.json")
        return None if doc is None else self._image(image_id, doc)

    def delete_image(self, node_image: NodeImage) -> bool:
        """Forget the image (the disk file belongs to whoever registered it)."""
        path = self._images / f"{node_image.id}.json"
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    # -- nodes --------------------------------------------------------------------------

    def _new_node_dir(self, name: str, image: NodeImage) -> Path:
        """The folder of a new node ``name`` booting ``image``, after checking both."""
        if not _NAME.match(name):
            raise UsageError(f"invalid node name {name!r}: lower-case letters, digits, dashes")
        if not image.extra.get("disk"):
            raise UsageError(f"image {image.id} is not a local image")
        workdir = self._nodes / name
        self._nodes.mkdir(parents=True, exist_ok=True)
        try:
            workdir.mkdir()
        except FileExistsError:
            raise UsageError(f"a node named {name!r} already exists here") from None
        return workdir

    def create_node(
        self,
        name: str,
        size: NodeSize,
        image: NodeImage,
        location: NodeLocation | None = None,
        auth: NodeAuthSSHKey | NodeAuthPassword | None = None,
        ex_user_data: str | None = None,
        ex_guest_ports: Sequence[int] = (22, 80),
    ) -> Node:
        """Boot ``image`` with a NoCloud seed holding ``ex_user_data`` (or, given only
        ``auth``, a cloud-config installing that key for root); ``name`` is its hostname."""
        workdir = self._new_node_dir(name, image)
        doc = image.extra
        if isinstance(auth, NodeAuthPassword):
            raise UsageError("local nodes take an SSH key, not a password")
        if ex_user_data is None and auth is not None:
            ex_user_data = ssh_cloud_config([auth.pubkey])
        seed = None
        if ex_user_data is not None:
            seed = build_seed(
                workdir / "seed.iso", instance_id=name, hostname=name, user_data=ex_user_data
            )
        spec = VMSpec(
            disk=Path(doc["disk"]),
            disk_format=TARGETS[doc["disk_format"]].qemu_format,
            seed=seed,
            guest_ports=tuple(ex_guest_ports),
            memory_mib=int(size.ram),
            cpus=int((size.extra or {}).get("vcpus", 1)),
        )
        accel = self.accel or detect_accel()
        serial, stderr_log = workdir / "serial.log", workdir / "qemu.stderr"

        def argv_for(ports: Any) -> list[str]:
            argv = qemu_argv(
                spec, accel=accel, ports=ports, serial_log=serial, pid_file=workdir / "qemu.pid"
            )
            argv += firmware_argv(doc.get("firmware", "bios"), workdir / "efivars.fd")
            for extra in doc.get("extra_disks") or ():
                fmt = TARGETS[doc["disk_format"]].qemu_format
                argv += ["-drive", f"file={extra},if=virtio,format={fmt},snapshot=on"]
            return argv

        try:
            launched = process.launch(argv_for, spec.guest_ports, stderr_log)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        record = {
            "name": name,
            "pid": launched.pid,
            "ports": {str(g): h for g, h in launched.ports.items()},
            "serial_log": str(serial),
            "stderr_log": str(stderr_log),
            "size": size.id,
            "image": image.id,
            "accel": accel,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "argv": list(launched.argv),
        }
        _write_json(workdir / "node.json", record)
        return self._node(record, size=size, image=image)

    def _node(
        self, record: dict[str, Any], size: NodeSize | None = None, image: NodeImage | None = None
    ) -> Node:
        running = process.is_running(int(record["pid"]), record["serial_log"])
        extra = dict(record)
        extra["ports"] = {int(g): int(h) for g, h in record["ports"].items()}
        return Node(
            id=record["name"],
            name=record["name"],
            state=NodeState.RUNNING if running else NodeState.TERMINATED,
            public_ips=[HOST],
            private_ips=[],
            driver=self,
            size=size,
            image=image,
            extra=extra,
        )

    def ex_get_node(self, node_id: str) -> Node | None:
        if not _NAME.match(node_id):
            return None
        record = _read_json(self._nodes / node_id / "node.json")
        return None if record is None else self._node(record)

    def list_nodes(self) -> list[Node]:
        nodes = []
        for path in sorted(self._nodes.glob("*/node.json")):
            record = _read_json(path)
            if record is not None:
                nodes.append(self._node(record))
        return nodes

    def destroy_node(self, node: Node) -> bool:
        """Stop the node's QEMU (only if its pid is still that QEMU) and delete its files."""
        workdir = self._nodes / str(node.id)
        record = _read_json(workdir / "node.json")
        if record is None:
            return False
        process.stop(int(record["pid"]), record["serial_log"])
        shutil.rmtree(workdir)
        return True

    def ex_serial_output(self, node: Node) -> str:
        """The node's serial console so far, without terminal escape codes."""
        return tail(Path(node.extra["serial_log"]), 1_000_000)

    def ex_exit_reason(self, node: Node) -> str | None:
        """None while the node's QEMU runs; else why it stopped (QEMU's last stderr lines)."""
        if process.is_running(int(node.extra["pid"]), node.extra["serial_log"]):
            return None
        return process.exit_reason(Path(node.extra["stderr_log"]))


__all__ = ["SIZES", "QemuNodeDriver"]
