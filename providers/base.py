"""The provider contract: one small interface every target (local QEMU, clouds) implements.

A boot is a sequence of stages; each stage is one method here, and ``boot.py`` runs them in order,
timing each and tearing down on failure::

    prepare → upload → register_image → create_nodes → wait_healthy      (teardown: any time)

Promises every provider keeps (the contract tests in ``tests/providers/`` hold them to it):

- ``prepare`` restores the image and converts it to ``disk_format`` under the run directory
  (the base class does it; providers rarely override it).
- Every stage that creates something records it with ``run.add_resource`` as soon as its id
  is known — before waiting on it — so a crash mid-way leaves a record naming it.
- ``delete(resource)`` is idempotent: True when it deleted the resource, False when it was
  already gone; a ``ProviderError`` only when it exists and could not be deleted.
- ``teardown`` works from the run record alone, in a process that did not boot the run.
- Long operations are polled with the provider's own deadlines, never a library default.
- Credentials come from the environment or a credentials file named in ``settings_help``;
  they are never recorded in the run, logged or put in argv. ``settings`` (region, project…)
  are not secret and are recorded, so a later teardown talks to the same place.

The nodes are libcloud ``Node`` objects and images ``NodeImage``s, so callers above see every
target the same way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from libcloud.compute.base import Node, NodeImage, NodeSize

from imagekit.errors import ImagekitError, UsageError
from imagekit.guest.profile import GuestProfile
from imagekit.progress import Progress
from imagekit.providers import health
from imagekit.providers.limits import SizeLimit, check_size
from imagekit.providers.sizes import choose_size

if TYPE_CHECKING:
    from imagekit.providers.runs import Run


# --- value objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A setting a provider reads: what ``imagekit providers`` shows under "needs"."""

    name: str  # the key in ``settings`` (and in the run record when not secret)
    help: str
    env: str | None = None  # environment variable read when ``settings`` lacks the key
    required: bool = True
    secret: bool = False  # credentials: from the environment only, never recorded

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "env": self.env,
            "help": self.help,
            "required": self.required,
            "secret": self.secret,
        }


@dataclass(frozen=True)
class Resource:
    """One thing a run created: a node, disk, NIC, public IP, firewall rule, image, object…"""

    kind: str
    id: str
    name: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # what deleting it needs to know

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)

    def __str__(self) -> str:
        return f"{self.kind} {self.name or self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "extra": dict(self.extra)}

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> Resource:
        extra = {str(k): str(v) for k, v in (doc.get("extra") or {}).items()}
        return Resource(str(doc["kind"]), str(doc["id"]), str(doc.get("name", "")), extra)


@dataclass(frozen=True)
class Endpoint:
    """Where a node's guest port answers from here."""

    guest_port: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {"guest_port": self.guest_port, "host": self.host, "port": self.port}


@dataclass(frozen=True)
class NodeInfo:
    """A node as the run record keeps it."""

    id: str
    name: str
    endpoints: tuple[Endpoint, ...] = ()
    size: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "endpoints": [e.as_dict() for e in self.endpoints],
        }

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> NodeInfo:
        endpoints = tuple(
            Endpoint(int(e["guest_port"]), str(e["host"]), int(e["port"]))
            for e in doc.get("endpoints") or ()
        )
        return NodeInfo(str(doc["id"]), str(doc["name"]), endpoints, str(doc.get("size", "")))


@dataclass(frozen=True)
class PreparedImage:
    """The image converted to the provider's format, on local disk."""

    path: Path  # the boot disk
    disk_format: str  # a convert target name (imagekit.convert.TARGETS)
    name: str
    image_id: str
    virtual_size: int
    extra_disks: tuple[Path, ...] = ()  # further volumes, in manifest order
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: What the guest stage read of the disk (None: not inspected; the metadata decides).
    guest: GuestProfile | None = None

    @property
    def boot_mode(self) -> str:
        """``uefi`` or ``bios``: how the image boots. The guest's own partitions decide when it
        was inspected (a disk with both paths boots through the BIOS, which every target has);
        else its metadata (``boot_mode``, or the exported AMI's or instance's boot mode); one
        that says nothing boots through the BIOS."""
        if self.guest is not None:
            return "uefi" if self.guest.uefi_only else "bios"
        value = self.metadata.get("boot_mode")
        for source in ("ami", "instance"):  # export's metadata keys (export/job, instance)
            recorded = self.metadata.get(source)
            if not value and isinstance(recorded, Mapping):
                value = recorded.get("boot_mode")
        # AWS's "uefi-preferred" AMIs carry both boot paths: BIOS is what every target has.
        return "uefi" if value == "uefi" else "bios"

    @property
    def architecture(self) -> str:
        """``x86_64`` or ``arm64``: the guest's, else from the metadata as ``boot_mode`` is."""
        if self.guest is not None:
            return self.guest.architecture
        value = self.metadata.get("architecture")
        for source in ("ami", "instance"):
            recorded = self.metadata.get(source)
            if not value and isinstance(recorded, Mapping):
                value = recorded.get("architecture")
        return "arm64" if value in ("arm64", "aarch64") else "x86_64"

    @property
    def instance_type(self) -> str | None:
        """The AWS instance type recorded with the image (metadata ``instance_type``)."""
        value = self.metadata.get("instance_type")
        return str(value) if value else None


@dataclass(frozen=True)
class UploadedImage:
    prepared: PreparedImage
    location: str  # where the provider reads it: a path, gs:// or blob URL, Glance id…


@dataclass(frozen=True)
class NodeRequest:
    """What ``create_nodes`` boots."""

    count: int
    size: NodeSize
    user_data: str
    guest_ports: tuple[int, ...] = (22, 80)
    name_prefix: str = "node"
    ssh_public_key: str | None = None  # offered for login (cloud key pair / metadata)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UsageError(f"--count {self.count}: boot at least one node")
        bad = [p for p in self.guest_ports if not 0 < p < 65536]
        if bad or len(set(self.guest_ports)) != len(self.guest_ports):
            raise UsageError(f"guest ports must be distinct TCP ports: {self.guest_ports}")

    def node_names(self) -> list[str]:
        return [f"{self.name_prefix}-{i}" for i in range(1, self.count + 1)]


@dataclass(frozen=True)
class TeardownReport:
    run_id: str
    deleted: tuple[Resource, ...] = ()
    already_gone: tuple[Resource, ...] = ()
    failed: tuple[tuple[Resource, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "deleted": [str(r) for r in self.deleted],
            "already_gone": [str(r) for r in self.already_gone],
            "failed": [{"resource": str(r), "error": e} for r, e in self.failed],
        }


class ImageSource(Protocol):
    """Where ``prepare`` gets the image: a stored image, or a disk file (see ``sources.py``)."""

    def describe(self) -> dict[str, Any]: ...

    def preview(self, disk_format: str) -> PreparedImage:
        """What ``materialise`` will make, known before it runs (sizes, metadata; no file)."""
        ...

    def materialise(
        self, folder: Path, disk_format: str, progress: Progress | None = None
    ) -> PreparedImage: ...


# --- the contract -------------------------------------------------------------------------------


class Provider(ABC):
    """A target. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    disk_format: ClassVar[str]  # the convert target it boots
    #: The largest boot disk the target takes (``limits.py``), checked before the restore.
    size_limits: ClassVar[tuple[SizeLimit, ...]] = ()
    settings_help: ClassVar[tuple[Setting, ...]] = ()
    # Every run offers its own SSH key, so the default proves the guest took it: an SSH banner
    # (tcp:22) answers on a guest that never got its key or user-data.
    default_checks: ClassVar[tuple[str, ...]] = ("ssh:true",)
    ssh_user: ClassVar[str] = "root"
    #: Whether boots adapt the guest unless told otherwise (imagekit.guest; --no-adapt).
    adapt_default: ClassVar[bool] = True

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        """``settings``: non-secret values (a run record's, at teardown); the rest from env."""
        self.state_dir = Path(state_dir)
        given = dict(settings or {})
        known = {s.name: s for s in self.settings_help}
        unknown = sorted(k for k in given if k not in known or known[k].secret)
        if unknown:
            public = sorted(k for k, s in known.items() if not s.secret)
            raise UsageError(
                f"provider {self.name}: unknown settings {unknown}", hint=f"known: {public}"
            )
        self.settings: dict[str, str] = {}
        for setting in self.settings_help:
            value = given.get(setting.name)
            if value is None and setting.env:
                value = os.environ.get(setting.env) or None
            if value is not None and not setting.secret:
                self.settings[setting.name] = value
            elif value is None and setting.required:
                raise UsageError(
                    f"provider {self.name} needs {setting.name}: {setting.help}",
                    hint=f"set {setting.env}" if setting.env else None,
                )

    def secret(self, name: str) -> str | None:
        """A credential from its environment variable; never stored on the provider."""
        setting = next((s for s in self.settings_help if s.name == name), None)
        if setting is None or not setting.secret or not setting.env:
            raise KeyError(name)
        return os.environ.get(setting.env) or None

    # -- stages --------------------------------------------------------------------------

    def prepare(
        self,
        source: ImageSource,
        run: Run,
        progress: Progress | None = None,
        *,
        disk_format: str | None = None,
    ) -> PreparedImage:
        """Restore and convert the image into ``<run dir>/image`` (removed with the run).

        ``disk_format``: another convert target than the provider's (the guest stage adapts a
        writable working copy first when the provider's format is not one, e.g. GCE's tar).
        """
        folder = run.dir / "image"
        folder.mkdir(exist_ok=True)
        return source.materialise(folder, disk_format or self.disk_format, progress)

    @abstractmethod
    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        """Put the prepared file where the provider can import it."""

    @abstractmethod
    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        """Make a bootable image of the uploaded file."""

    @abstractmethod
    def list_sizes(self) -> list[NodeSize]:
        """The sizes ``create_nodes`` accepts (vCPUs in ``extra``, memory MiB as ``ram``)."""

    def choose_size(self, wanted: str | None, image: PreparedImage) -> tuple[NodeSize, str]:
        """The size to boot and why (see ``sizes.choose_size``)."""
        return choose_size(self.list_sizes(), wanted, image.instance_type)

    def check_image_size(self, virtual_size: int, boot_mode: str) -> None:
        """``UsageError`` when the image is larger than this target takes (pure: before the
        restore, so that a too large image costs nothing)."""
        check_size(self.name, self.disk_format, self.size_limits, virtual_size, boot_mode)

    @abstractmethod
    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        """Start ``request.count`` nodes; record each as a resource as soon as it exists."""

    @abstractmethod
    def node_info(self, node: Node) -> NodeInfo:
        """The node's id, name and endpoints, for the record and the user."""

    @abstractmethod
    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        """How the health checks reach ``node``."""

    def wait_healthy(
        self, nodes: Sequence[Node], checks: Sequence[health.Check], run: Run, timeout: float
    ) -> list[health.CheckResult]:
        """Every check passing on every node within ``timeout`` seconds, else ``HealthError``."""
        targets = [self.health_target(node, run) for node in nodes]
        return health.wait_healthy(targets, checks, timeout)

    # -- teardown ------------------------------------------------------------------------

    @abstractmethod
    def delete(self, resource: Resource) -> bool:
        """Delete one resource: True if deleted now, False if already gone (idempotent)."""

    @abstractmethod
    def exists(self, resource: Resource) -> bool:
        """Whether the resource is still there (teardown checks, tests)."""

    def teardown(self, run: Run) -> TeardownReport:
        """Delete every recorded resource, newest first; each success leaves the record at once.

        Failures are collected, not raised: the caller decides (the record keeps what remains).
        """
        deleted: list[Resource] = []
        gone: list[Resource] = []
        failed: list[tuple[Resource, str]] = []
        for resource in reversed(run.record.resources):
            try:
                (deleted if self.delete(resource) else gone).append(resource)
            except ImagekitError as exc:
                failed.append((resource, str(exc)))
                continue
            run.forget_resource(resource)
        return TeardownReport(run.run_id, tuple(deleted), tuple(gone), tuple(failed))

    # -- dry run -------------------------------------------------------------------------

    def planned_calls(self, request: NodeRequest, run_id: str) -> list[str]:
        """The calls a boot would make, in order, without making any (``boot --dry-run``).

        Only the provider's own calls (upload, register, create); the caller adds the local
        prepare step and the health checks. Clouds override this with their API requests.
        """
        return [
            f"upload the {self.disk_format} image for run {run_id}",
            "register the image",
            *(f"create node {name} ({request.size.id})" for name in request.node_names()),
        ]

    # -- description ---------------------------------------------------------------------

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "description": cls.description,
            "disk_format": cls.disk_format,
            "default_checks": list(cls.default_checks),
            "needs": [s.as_dict() for s in cls.settings_help],
        }


__all__ = [
    "Endpoint",
    "ImageSource",
    "NodeInfo",
    "NodeRequest",
    "PreparedImage",
    "Provider",
    "Resource",
    "Setting",
    "TeardownReport",
    "UploadedImage",
]
