"""What each twin presents to a guest: machine identity, devices, network. Pure values.

Every string here is one a guest reads to decide where it runs — checked against Debian 12's
cloud-init 22.4 (``ds-identify`` and the GCE, Azure, OpenStack and ConfigDrive datasources):

- GCE: ``platform_reports_gce()`` accepts the DMI product name ``Google Compute Engine`` or a
  serial starting ``GoogleCloud-``; ds-identify reads the same two. Metadata lives at
  ``metadata.google.internal`` (resolved by the VPC's DNS at 169.254.169.254); the VPC's MTU is
  1460, handed out by DHCP. MACs start 42:01, disks are "Google PersistentDisk" on virtio-scsi.
- Azure: ds-identify's first test is the chassis asset tag ``7783-7084-3265-9085-8269-3286-77``;
  IMDS answers at 169.254.169.254, the wireserver at 168.63.129.16. Azure's MACs start 00:0d:3a,
  its first usable address in a subnet is .4.
- OpenStack: ds-identify wants the DMI product name ``OpenStack Nova`` (or ``OpenStack
  Compute``) for the metadata service, or a filesystem labelled ``config-2`` for a config drive.
  Neutron's VXLAN overlay leaves a 1450-byte MTU.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

ADDR_METADATA = "169.254.169.254"  # GCE metadata, Azure IMDS, Nova metadata: one address
ADDR_WIRESERVER = "168.63.129.16"


@dataclass(frozen=True)
class Network:
    """The guest's subnet as the twin's DHCP server hands it out."""

    gateway: IPv4Interface  # the twin's side: gateway address with the subnet's prefix
    guest: IPv4Address  # the one node's address (one node per twin network)
    mtu: int
    dns: IPv4Address
    domain: str  # search domain

    @property
    def netmask(self) -> str:
        return str(self.gateway.network.netmask)


@dataclass(frozen=True)
class Cloud:
    """One cloud's guest environment, as far as QEMU can present it."""

    name: str  # gcp, azure, openstack
    smbios: tuple[str, ...]  # -smbios values, with {serial} and {uuid} filled per node
    disk: str  # "virtio-scsi" or "virtio-blk"
    disk_vendor: tuple[str, str] | None  # (vendor, product) a SCSI disk reports
    mac_prefix: str  # the cloud's MAC range; the node's last three octets are derived
    network: Network
    services: tuple[str, ...]  # link-local addresses the twin answers on
    dns_records: tuple[tuple[str, str], ...] = ()  # (name, address) the twin's DNS resolves
    dhcp_options: tuple[str, ...] = ()  # further dnsmasq --dhcp-option values


GCP = Cloud(
    name="gcp",
    smbios=(
        "type=0,vendor=Google,version=Google,date=01/01/2011",
        "type=1,manufacturer=Google,product=Google Compute Engine,"
        "serial=GoogleCloud-{serial},uuid={uuid}",
        "type=3,manufacturer=Google,serial=GoogleCloud-{serial}",
    ),
    disk="virtio-scsi",
    disk_vendor=("Google", "PersistentDisk"),
    mac_prefix="42:01:0a",
    network=Network(
        gateway=IPv4Interface("10.128.0.1/20"),
        guest=IPv4Address("10.128.0.2"),
        mtu=1460,
        dns=IPv4Address(ADDR_METADATA),
        domain="c.imagekit-twin.internal",
    ),
    services=(ADDR_METADATA,),
    dns_records=(("metadata.google.internal", ADDR_METADATA),),
)

AZURE = Cloud(
    name="azure",
    smbios=(
        "type=0,vendor=American Megatrends Inc.,version=090008,date=12/07/2018",
        "type=1,manufacturer=Microsoft Corporation,product=Virtual Machine,version=7.0,"
        "serial={serial},uuid={uuid}",
        "type=3,manufacturer=Microsoft Corporation,version=7.0,serial={serial},"
        "asset=7783-7084-3265-9085-8269-3286-77",
    ),
    disk="virtio-scsi",
    disk_vendor=("Msft", "Virtual Disk"),
    mac_prefix="00:0d:3a",
    network=Network(
        gateway=IPv4Interface("10.0.0.1/24"),
        guest=IPv4Address("10.0.0.4"),
        mtu=1500,
        dns=IPv4Address(ADDR_WIRESERVER),  # Azure's DNS is served from the wireserver address
        domain="imagekit-twin.internal.cloudapp.net",
    ),
    services=(ADDR_METADATA, ADDR_WIRESERVER),
    # Option 245 names the wireserver; cloud-init and waagent read it from the DHCP lease.
    dhcp_options=(f"245,{ADDR_WIRESERVER}",),
)

OPENSTACK = Cloud(
    name="openstack",
    smbios=(
        "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,version=25.0.0,"
        "serial={uuid},uuid={uuid},family=Virtual Machine",
    ),
    disk="virtio-blk",
    disk_vendor=None,
    mac_prefix="fa:16:3e",
    network=Network(
        gateway=IPv4Interface("10.0.0.1/24"),
        guest=IPv4Address("10.0.0.10"),
        mtu=1450,
        dns=IPv4Address("10.0.0.1"),
        domain="openstacklocal",
    ),
    services=(ADDR_METADATA,),
)

CLOUDS = {cloud.name: cloud for cloud in (GCP, AZURE, OPENSTACK)}


def node_mac(cloud: Cloud, node_number: int) -> str:
    """A MAC in the cloud's range; unique per node on one host while fewer than 2**24 run."""
    tail = node_number & 0xFFFFFF
    octets = (tail >> 16 & 0xFF, tail >> 8 & 0xFF, tail & 0xFF)
    return cloud.mac_prefix + "".join(f":{o:02x}" for o in octets)


def smbios_args(cloud: Cloud, *, serial: str, uuid: str) -> list[str]:
    argv: list[str] = []
    for value in cloud.smbios:
        argv += ["-smbios", value.format(serial=serial, uuid=uuid)]
    return argv


def disk_args(cloud: Cloud, drives: list[str], bus: str | None = None) -> list[str]:
    """QEMU arguments attaching ``drives`` (``-drive`` values, no ``if=``) on the cloud's bus,
    or on ``bus`` (``nvme``: one controller a disk, as GCE's NVMe machine families attach)."""
    bus = bus or cloud.disk
    argv: list[str] = []
    if bus == "virtio-scsi":
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for index, drive in enumerate(drives):
        argv += ["-drive", f"{drive},if=none,id=disk{index}"]
        if bus == "nvme":
            argv += ["-device", f"nvme,drive=disk{index},serial=persistent-disk-{index}"]
        elif bus == "virtio-scsi":
            device = f"scsi-hd,drive=disk{index},bus=scsi0.0"
            if cloud.disk_vendor:
                vendor, product = cloud.disk_vendor
                device += f",vendor={vendor},product={product}"
            argv += ["-device", device]
        else:
            argv += ["-device", f"virtio-blk-pci,drive=disk{index}"]
    return argv


__all__ = [
    "ADDR_METADATA",
    "ADDR_WIRESERVER",
    "AZURE",
    "CLOUDS",
    "GCP",
    "OPENSTACK",
    "Cloud",
    "Network",
    "disk_args",
    "node_mac",
    "smbios_args",
]
