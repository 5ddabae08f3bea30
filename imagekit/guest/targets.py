"""What each target presents to a guest and expects of it: pure values.

One entry per provider that boots a guest. The twins present what their cloud presents where
QEMU can (SMBIOS, metadata, the disk bus GCE and OpenStack use) and differ where it cannot:
QEMU has no Hyper-V VMBus, so the Azure twin's disk is on virtio-scsi and the rules ask the twin
for virtio drivers where real Azure needs ``hv_storvsc``/``hv_netvsc`` (docs/guests.md).

Sources: cloud-init 22.4.2's ds-identify and datasources (which datasource a cloud satisfies),
each cloud's image import rules (docs/providers/*.md), the twins' hardware (providers/twins).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imagekit.errors import UsageError


@dataclass(frozen=True)
class GuestTarget:
    name: str  # the provider's name
    cloud: str  # gcp | azure | openstack | rackspace | local
    #: cloud-init datasources that serve this target, in the order to try them.
    datasources: tuple[str, ...]
    #: The guest needs one of these before its root is mounted (built in or in the initramfs).
    storage: tuple[str, ...]
    #: ...and one of these installed (NIC drivers load from the root filesystem).
    nics: tuple[str, ...]
    console: str = "ttyS0"  # where the target reads the guest's console (serial log)
    console_arg: str = "console=ttyS0,115200"
    boot_modes: frozenset[str] = frozenset({"bios", "uefi"})
    architectures: frozenset[str] = frozenset({"x86_64"})
    #: A time server the target's guests can reach; None: keep the guest's own pools.
    time_server: str | None = None
    #: A generalized Azure image needs the guest to report Ready.
    reports_ready: bool = False
    #: Another agent that reads this cloud's metadata in place of cloud-init (SSH keys).
    agent: str | None = None


_GCP = GuestTarget(
    "gcp",
    "gcp",
    ("GCE",),
    ("virtio_scsi", "nvme"),
    ("virtio_net", "gve"),
    console_arg="console=ttyS0,38400n8",  # what GCE's own images pass
    architectures=frozenset({"x86_64", "arm64"}),
    time_server="metadata.google.internal",
    agent="google-guest-agent",
)
_AZURE = GuestTarget(
    "azure",
    "azure",
    ("Azure",),
    ("hv_storvsc",),
    ("hv_netvsc",),
    architectures=frozenset({"x86_64", "arm64"}),
    reports_ready=True,
    agent="waagent",
)
_OPENSTACK = GuestTarget(
    "openstack",
    "openstack",
    ("ConfigDrive", "OpenStack"),
    ("virtio_blk", "virtio_scsi"),
    ("virtio_net",),
    architectures=frozenset({"x86_64", "arm64"}),
)
_X86 = frozenset({"x86_64"})  # the twins are QEMU on this host

TARGETS: dict[str, GuestTarget] = {
    t.name: t
    for t in (
        GuestTarget("local", "local", ("NoCloud",), ("virtio_blk",), ("virtio_net",)),
        _GCP,
        replace(_GCP, name="gcp-twin", storage=("virtio_scsi",), architectures=_X86),
        _AZURE,
        replace(
            _AZURE,
            name="azure-twin",
            storage=("virtio_scsi",),
            nics=("virtio_net",),
            architectures=_X86,
        ),
        _OPENSTACK,
        replace(_OPENSTACK, name="openstack-twin", storage=("virtio_blk",), architectures=_X86),
        # Rackspace's public cloud imports VHDs onto XenServer: Xen's paravirtual drivers, the
        # config drive, BIOS boot.
        GuestTarget(
            "rackspace",
            "rackspace",
            ("ConfigDrive",),
            ("xen_blkfront",),
            ("xen_netfront",),
            console="hvc0",
            console_arg="console=hvc0",
            boot_modes=frozenset({"bios"}),
        ),
    )
}


def guest_target(name: str) -> GuestTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(
            f"unknown target {name!r} for the guest rules", hint=f"one of {sorted(TARGETS)}"
        ) from None


__all__ = ["TARGETS", "GuestTarget", "guest_target"]
