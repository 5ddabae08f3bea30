"""The guest rules on hand-written agent dumps: every finding, its edits, idempotence. Pure.

``dump()`` is what the agent reads off Debian 12 configured as Debian's EC2 image (the figures
come from a real dump of the project's image); each test changes what its rule looks at.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imagekit.guest.edits import RemovePath, RunCommand, WriteFile
from imagekit.guest.facts import boot_mode, parse_facts
from imagekit.guest.rules import (
    CHRONY_SOURCES,
    DATASOURCE_DROP_IN,
    GRUB_DROP_IN,
    Assessment,
    assess,
)
from imagekit.guest.targets import TARGETS

KERNEL = "6.1.0-57-cloud-amd64"
ROOT_UUID = "528b3409-08e6-5555-9298-368811a93cac"
DATA_UUID = "0a6f3f0e-1111-4c5e-9d1b-0123456789ab"
VIRTIO = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "virtio", "virtio_ring"]
VIRTIO += ["sd_mod", "scsi_mod"]
CLOUD_DRIVERS = [*VIRTIO, "ena", "gve", "hv_vmbus", "hv_storvsc", "hv_netvsc", "xen_blkfront"]
CLOUD_DRIVERS += ["xen_netfront", "ata_piix"]


def dump(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "disks": [
            {
                "device": "/dev/sda",
                "table": "msdos",
                "mbr_code": True,
                "partitions": [{"number": 1, "mbr_id": 0x83, "bootable": 1}],
            }
        ],
        "filesystems": {"/dev/sda1": {"type": "ext4", "uuid": ROOT_UUID, "label": "root"}},
        "os": {
            "type": "linux",
            "distro": "debian",
            "major": 12,
            "minor": 15,
            "arch": "x86_64",
            "product": "12.15",
            "root": "/dev/sda1",
        },
        "files": {
            "/etc/fstab": f"UUID={ROOT_UUID} / ext4 defaults,discard 0 1\n",
            "/etc/cloud/cloud.cfg": "datasource_list: [ NoCloud, ConfigDrive, Ec2, None ]\n",
            "/etc/cloud/cloud.cfg.d/90_dpkg.cfg": "datasource_list: [ Ec2, None ]\n",
            "/boot/grub/grub.cfg": (
                f"menuentry 'Debian' {{\n\tlinux /boot/vmlinuz-{KERNEL} root=UUID={ROOT_UUID}"
                " console=tty0 console=ttyS0,115200 net.ifnames=0 ro\n}\n"
            ),
            "/etc/default/grub": 'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"\n',
            "/etc/initramfs-tools/initramfs.conf": "MODULES=most\n",
            "/etc/initramfs-tools/modules": "# List of modules\n",
        },
        "kernels": [
            {
                "version": KERNEL,
                "initrd": f"/boot/initrd.img-{KERNEL}",
                "initrd_modules": [f"{m}.ko" for m in CLOUD_DRIVERS],
                "builtin": ["kernel/drivers/nvme/host/nvme.ko"],
                "installed": [f"kernel/drivers/x/{m}.ko.xz" for m in CLOUD_DRIVERS],
            }
        ],
        "units": {"cloud-init.service": "enabled", "cloud-init-local.service": "enabled"},
        "packages": {"cloud-init": "22.4.2", "initramfs-tools": "0.142"},
        "cloud_instances": [],
        "esp_loaders": [],
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


def files(**extra: str | None) -> dict[str, str]:
    """The default dump's files, with some added, replaced or (None) removed."""
    out: dict[str, str] = dict(dump()["files"])
    for path, text in extra.items():
        key = path if path.startswith("/") else "/" + path.replace("__", "/")
        if text is None:
            out.pop(key, None)
        else:
            out[key] = text
    return out


def judge(raw: dict[str, Any], target: str) -> Assessment:
    return assess(parse_facts(raw), TARGETS[target])


def codes(assessment: Assessment, severity: str | None = None) -> list[str]:
    return [f.code for f in assessment.findings if severity in (None, f.severity)]


def applied(raw: dict[str, Any], assessment: Assessment) -> dict[str, Any]:
    """The dump as the agent would read it after the edits (the guest's tools simulated:
    update-initramfs/dracut add the listed modules to the initramfs)."""
    after = copy.deepcopy(raw)
    for edit in assessment.edits:
        if isinstance(edit, WriteFile):
            after["files"][edit.path] = edit.content
        elif isinstance(edit, RemovePath):
            if edit.path == "/var/lib/cloud/instances":
                after["cloud_instances"] = []
        elif isinstance(edit, RunCommand) and edit.argv[0] in ("update-initramfs", "dracut"):
            added = ["virtio_blk", "virtio_scsi", "virtio_pci", "sd_mod"]
            after["kernels"][0]["initrd_modules"] += [f"{m}.ko" for m in added]
        elif isinstance(edit, RunCommand) and edit.argv[0] == "update-grub":
            added = after["files"][GRUB_DROP_IN].split("$GRUB_CMDLINE_LINUX ")[1].rstrip('"\n')
            grub = after["files"]["/boot/grub/grub.cfg"]
            after["files"]["/boot/grub/grub.cfg"] = grub.replace(" ro\n", f" {added} ro\n")
    return after


def assert_idempotent(raw: dict[str, Any], target: str) -> None:
    first = judge(raw, target)
    again = judge(applied(raw, first), target)
    assert again.edits == (), [e.describe() for e in again.edits]


# --- cloud-init ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "listed"),
    [
        ("gcp", "[ GCE, None ]"),
        ("gcp-twin", "[ GCE, None ]"),
        ("azure", "[ Azure, None ]"),
        ("openstack", "[ ConfigDrive, OpenStack, None ]"),
        ("rackspace", "[ ConfigDrive, None ]"),
        ("local", "[ NoCloud, None ]"),
    ],
)
def test_an_ec2_only_guest_gets_the_targets_datasources_in_a_drop_in(
    target: str, listed: str
) -> None:
    verdict = judge(dump(), target)
    # Rackspace's Xen guests log to hvc0, which the EC2 image's kernel line does not name.
    console = ["serial-console"] if target == "rackspace" else []
    assert codes(verdict) == ["datasource", *console] and verdict.bootable
    edit = verdict.edits[0]
    assert isinstance(edit, WriteFile) and edit.path == DATASOURCE_DROP_IN and not edit.backup
    assert f"datasource_list: {listed}\n" in edit.content
    assert "[Ec2, None]" in edit.content and "90_dpkg.cfg" in edit.content  # says why
    assert_idempotent(dump(), target)


def test_the_drop_in_sorts_after_every_other_cloud_init_drop_in() -> None:
    # cloud-init merges cloud.cfg.d/*.cfg in name order and the last datasource_list wins.
    others = ["90_dpkg.cfg", "99-disable-network-config.cfg", "99_zz_custom.cfg", "99z.cfg"]
    name = DATASOURCE_DROP_IN.rsplit("/", 1)[1]
    assert sorted([*others, name])[-1] == name


def test_a_guest_that_already_allows_the_target_needs_no_change() -> None:
    gce = files(**{"/etc/cloud/cloud.cfg.d/90_dpkg.cfg": "datasource_list: [ GCE, None ]\n"})
    assert judge(dump(files=gce), "gcp").findings == ()
    # No datasource_list at all: cloud-init tries every datasource it has.
    unset = files(**{"/etc/cloud/cloud.cfg.d/90_dpkg.cfg": None, "/etc/cloud/cloud.cfg": "a: 1\n"})
    assert judge(dump(files=unset), "azure").findings == ()


def test_an_earlier_boots_state_is_reset_so_per_instance_modules_run_again() -> None:
    raw = dump(cloud_instances=["i-0123456789abcdef0"])
    verdict = judge(raw, "gcp")
    assert codes(verdict) == ["datasource", "cloud-init-state"]
    removed = [e.path for e in verdict.edits if isinstance(e, RemovePath)]
    assert "/var/lib/cloud/instances" in removed and "/var/lib/cloud/instance" in removed
    assert_idempotent(raw, "gcp")


@pytest.mark.parametrize("target", ["gcp", "openstack", "local", "rackspace"])
def test_a_guest_without_cloud_init_or_the_clouds_agent_is_a_blocker(target: str) -> None:
    disabled = files(**{"/etc/cloud/cloud-init.disabled": ""})
    verdict = judge(dump(files=disabled), target)
    assert codes(verdict, "blocker") == ["no-provisioning"] and not verdict.bootable
    assert "cloud-init.disabled" in verdict.blockers[0].message


def test_gcp_accepts_the_google_guest_agent_in_place_of_cloud_init() -> None:
    units = {"cloud-init.service": "masked", "google-guest-agent.service": "enabled"}
    assert judge(dump(units=units), "gcp").bootable
    assert not judge(dump(units=units), "openstack").bootable


def test_azure_registers_specialized_when_nothing_will_report_ready() -> None:
    masked = {"cloud-init.service": "masked", "cloud-init-local.service": "masked"}
    verdict = judge(dump(units=masked), "azure")
    assert codes(verdict) == ["azure-specialized"] and verdict.bootable
    assert verdict.profile.azure_ready is False
    # waagent provisioning reports Ready itself.
    agent = {**masked, "walinuxagent.service": "enabled"}
    conf = files(**{"/etc/waagent.conf": "Provisioning.Agent=waagent\n"})
    ready = judge(dump(units=agent, files=conf), "azure")
    assert ready.profile.azure_ready is True and "azure-specialized" not in codes(ready)
    # An agent that hands provisioning to a cloud-init that is masked does not.
    handed = files(**{"/etc/waagent.conf": "Provisioning.Agent=cloud-init\n"})
    assert judge(dump(units=agent, files=handed), "azure").profile.azure_ready is False
    # cloud-init with the Azure datasource (after adaptation) reports Ready.
    assert judge(dump(), "azure").profile.azure_ready is True


# --- network ------------------------------------------------------------------------------------

UDEV = (
    "# generated\n"
    'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="0e:1a:2b:3c:4d:5e", '
    'NAME="ens5"\n'
)
NETPLAN = """\
network:
  version: 2
  ethernets:
    ens5:
      match:
        macaddress: 0e:1a:2b:3c:4d:5e
      set-name: ens5
      dhcp4: true
"""


@pytest.mark.parametrize(
    ("path", "text", "kept", "gone"),
    [
        ("/etc/udev/rules.d/70-persistent-net.rules", UDEV, 'KERNEL=="eth0"', "0e:1a:2b"),
        ("/etc/netplan/50-cloud-init.yaml", NETPLAN, "name: e*", "macaddress"),
        (
            "/etc/sysconfig/network-scripts/ifcfg-eth0",
            "DEVICE=eth0\nHWADDR=0E:1A:2B:3C:4D:5E\nBOOTPROTO=dhcp\n",
            "BOOTPROTO=dhcp",
            "HWADDR",
        ),
        (
            "/etc/NetworkManager/system-connections/ens5.nmconnection",
            "[connection]\nid=ens5\n[ethernet]\nmac-address=0E:1A:2B:3C:4D:5E\n",
            "[ethernet]",
            "mac-address",
        ),
    ],
)
def test_mac_pinned_network_is_rewritten_to_match_the_first_nic(
    path: str, text: str, kept: str, gone: str
) -> None:
    raw = dump(files=files(**{path: text}))
    verdict = judge(raw, "openstack")
    assert "mac-pinned-network" in codes(verdict, "adapted")
    (edit,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == path]
    assert edit.backup  # the original is kept
    assert kept in edit.content and gone not in edit.content
    assert_idempotent(raw, "openstack")


def test_udev_pins_are_numbered_in_order_and_comments_are_left_alone() -> None:
    two = (
        '# ATTR{address}=="00:00:00:00:00:01", NAME="x"\n'
        + UDEV
        + UDEV.replace("ens5", "ens6").replace("5e", "5f").split("\n", 1)[1]
    )
    verdict = judge(dump(files=files(**{"/etc/udev/rules.d/70-persistent-net.rules": two})), "gcp")
    (edit,) = [e for e in verdict.edits if isinstance(e, WriteFile) and "udev" in e.path]
    assert 'KERNEL=="eth0"' in edit.content and 'KERNEL=="eth1"' in edit.content
    assert edit.content.startswith('# ATTR{address}=="00:00:00:00:00:01"')


# --- fstab --------------------------------------------------------------------------------------


def two_disks(fstab: str) -> dict[str, Any]:
    raw = dump(files=files(**{"/etc/fstab": fstab}))
    raw["disks"].append({"device": "/dev/sdb", "table": None, "mbr_code": False, "partitions": []})
    raw["filesystems"]["/dev/sdb"] = {"type": "ext4", "uuid": DATA_UUID, "label": ""}
    return raw


def test_an_ebs_device_name_becomes_the_uuid_of_the_volume_in_the_image() -> None:
    raw = two_disks(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n/dev/nvme1n1 /data ext4 defaults 0 2\n")
    verdict = judge(raw, "gcp")
    (edit,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == "/etc/fstab"]
    assert edit.backup
    assert edit.content.splitlines()[1].split() == [
        f"UUID={DATA_UUID}",
        "/data",
        "ext4",
        "defaults",
        "0",
        "2",
    ]
    assert edit.content.splitlines()[0].split()[0] == f"UUID={ROOT_UUID}"  # untouched
    assert_idempotent(raw, "gcp")


@pytest.mark.parametrize(
    "line",
    [
        "/dev/nvme2n1 /scratch ext4 defaults 0 2",
        "/dev/xvdf /scratch xfs rw 0 2",
        "UUID=ffffffff-0000-0000-0000-000000000000 /scratch ext4 defaults 0 2",
        "/dev/nvme1n1 /data xfs defaults 0 2",
    ],
)
def test_a_volume_not_in_the_image_gets_nofail(line: str) -> None:
    raw = two_disks(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n{line}\n")
    verdict = judge(raw, "azure")
    (edit,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == "/etc/fstab"]
    fields = edit.content.splitlines()[1].split()
    assert fields[0] == line.split()[0] and "nofail" in fields[3].split(",")
    assert_idempotent(raw, "azure")


def test_entries_that_cannot_stop_a_boot_are_left_alone() -> None:
    fstab = (
        f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
        "/dev/nvme2n1 /scratch ext4 defaults,nofail 0 2\n"
        "tmpfs /tmp tmpfs defaults 0 0\n"
        "server:/export /mnt nfs defaults 0 0\n"
        "# /dev/xvdb /old ext4 defaults 0 2\n"
    )
    assert "fstab-device-name" not in codes(judge(two_disks(fstab), "gcp"))


def test_a_nofail_mount_of_a_volume_in_the_image_is_still_moved_to_its_uuid() -> None:
    # nofail alone would boot with /data silently not mounted.
    raw = two_disks(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n/dev/nvme1n1 /data ext4 nofail 0 2\n")
    (edit,) = [e for e in judge(raw, "gcp").edits if getattr(e, "path", "") == "/etc/fstab"]
    assert edit.content.splitlines()[1].split()[:4] == [
        f"UUID={DATA_UUID}",
        "/data",
        "ext4",
        "nofail",
    ]


def test_a_root_mounted_by_its_nitro_name_is_mounted_by_uuid() -> None:
    raw = dump(files=files(**{"/etc/fstab": "/dev/nvme0n1p1 / ext4 defaults 0 1\n"}))
    verdict = judge(raw, "gcp")
    (edit,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == "/etc/fstab"]
    assert edit.content.split()[0] == f"UUID={ROOT_UUID}"


# --- initramfs ----------------------------------------------------------------------------------


def host_only(tool: str = "initramfs-tools") -> dict[str, Any]:
    raw = dump()
    raw["kernels"][0]["initrd_modules"] = ["ena.ko", "nvme-core.ko"]
    if tool == "dracut":
        raw["packages"] = {"cloud-init": "22.4.2", "dracut": "059"}
        raw["files"].pop("/etc/initramfs-tools/initramfs.conf")
    return raw


@pytest.mark.parametrize(
    ("target", "drivers"),
    [
        ("local", ["virtio_blk", "virtio_pci"]),
        ("openstack-twin", ["virtio_blk", "virtio_pci"]),
        ("gcp", ["virtio_scsi", "virtio_pci", "sd_mod"]),
        ("azure", ["hv_storvsc", "sd_mod"]),
    ],
)
def test_a_host_only_initramfs_gets_the_targets_disk_drivers_by_the_guests_tool(
    target: str, drivers: list[str]
) -> None:
    verdict = judge(host_only(), target)
    assert "initramfs-drivers" in codes(verdict, "adapted") and verdict.bootable
    writes = [e for e in verdict.edits if isinstance(e, WriteFile)]
    modules = next(e for e in writes if e.path == "/etc/initramfs-tools/modules")
    assert modules.backup and modules.content.startswith("# List of modules\n")
    assert [m for m in modules.content.splitlines() if not m.startswith("#")] == drivers
    assert verdict.edits[-1] == RunCommand(
        ("update-initramfs", "-u", "-k", KERNEL), "rebuild the initramfs"
    )  # after the files it reads
    assert set(drivers) <= verdict.profile.drivers


def test_dracut_guests_get_a_drop_in_and_dracut() -> None:
    verdict = judge(host_only("dracut"), "gcp-twin")
    (write,) = [e for e in verdict.edits if isinstance(e, WriteFile) and "dracut" in e.path]
    assert 'add_drivers+=" virtio_scsi virtio_pci sd_mod "' in write.content
    assert verdict.edits[-1].argv[:2] == ("dracut", "-f")  # type: ignore[union-attr]


def test_drivers_the_kernel_does_not_have_are_a_blocker() -> None:
    raw = host_only()
    raw["kernels"][0]["installed"] = ["kernel/drivers/net/ena.ko"]
    verdict = judge(raw, "gcp")
    assert codes(verdict, "blocker") == ["storage-driver-missing", "nic-driver-missing"]
    assert not verdict.bootable


def test_an_initramfs_that_cannot_be_listed_is_a_warning_not_a_guess() -> None:
    raw = dump()
    raw["kernels"][0]["initrd_modules"] = None
    assert codes(judge(raw, "gcp")) == ["datasource", "initramfs-unread"]


def test_the_newest_kernel_is_the_one_judged() -> None:
    raw = host_only()
    newer = copy.deepcopy(dump()["kernels"][0])
    newer["version"] = "6.1.0-100-cloud-amd64"
    raw["kernels"].append(newer)
    assert "initramfs-drivers" not in codes(judge(raw, "gcp"))


# --- console, time, agents ----------------------------------------------------------------------


def test_a_kernel_without_the_targets_serial_console_gets_it_through_grub() -> None:
    grub = dump()["files"]["/boot/grub/grub.cfg"].replace(" console=ttyS0,115200", "")
    raw = dump(files=files(**{"/boot/grub/grub.cfg": grub}))
    verdict = judge(raw, "gcp")
    (write,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == GRUB_DROP_IN]
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=ttyS0,38400n8"' in write.content
    assert RunCommand(("update-grub",), "regenerate grub.cfg") in verdict.edits
    assert_idempotent(raw, "gcp")
    assert "serial-console" not in codes(judge(dump(), "gcp"))


def test_an_aws_only_time_source_gets_the_targets_own() -> None:
    chrony = "sourcedir /etc/chrony/sources.d\nserver 169.254.169.123 prefer iburst\n"
    raw = dump(files=files(**{"/etc/chrony/chrony.conf": chrony}))
    verdict = judge(raw, "gcp")
    (write,) = [e for e in verdict.edits if isinstance(e, WriteFile) and e.path == CHRONY_SOURCES]
    assert "server metadata.google.internal iburst" in write.content
    # With a public pool beside it, the AWS server is only noise.
    pooled = chrony + "pool 2.debian.pool.ntp.org iburst\n"
    verdict = judge(dump(files=files(**{"/etc/chrony/chrony.conf": pooled})), "gcp")
    assert "aws-time-source" in codes(verdict, "warning")


def test_agents_of_another_cloud_are_named() -> None:
    units = {
        "cloud-init.service": "enabled",
        "amazon-ssm-agent.service": "enabled",
        "google-guest-agent.service": "enabled",
    }
    assert codes(judge(dump(units=units), "azure"), "warning") == ["aws-agent", "foreign-agent"]


# --- what the guest is --------------------------------------------------------------------------


def test_windows_is_detected_and_refused_with_a_reason() -> None:
    raw = dump(os={"type": "windows", "product": "Windows Server 2022 Datacenter"})
    verdict = judge(raw, "azure")
    assert codes(verdict) == ["windows-guest"] and not verdict.bootable
    assert "Windows Server 2022" in verdict.findings[0].message


def test_a_disk_with_no_operating_system_boots_unadapted_with_a_warning() -> None:
    verdict = judge(dump(os=None), "gcp")
    assert codes(verdict) == ["not-inspected"] and verdict.bootable and verdict.edits == ()


def test_an_arm64_guest_is_refused_where_the_target_runs_x86_only() -> None:
    raw = dump(os={**dump()["os"], "arch": "aarch64"})
    assert "architecture" in codes(judge(raw, "gcp-twin"), "blocker")
    assert "architecture" not in codes(judge(raw, "gcp"))
    assert judge(raw, "gcp").profile.architecture == "arm64"


def gpt(*parts: dict[str, Any], code: bool = False) -> list[dict[str, Any]]:
    return [{"device": "/dev/sda", "table": "gpt", "mbr_code": code, "partitions": list(parts)}]


ESP = {"number": 1, "gpt_type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}
BIOS_BOOT = {"number": 2, "gpt_type": "21686148-6449-6E6F-744E-656564454649"}


def test_boot_mode_is_read_from_the_partitions_and_the_loaders() -> None:
    assert boot_mode(dump()["disks"], []) == "bios"
    assert boot_mode(gpt(ESP), ["/EFI/BOOT/BOOTX64.EFI"]) == "uefi"
    assert boot_mode(gpt(ESP), []) == ""  # an empty ESP starts nothing
    assert boot_mode(gpt(ESP, BIOS_BOOT, code=True), ["/EFI/debian/grubx64.efi"]) == "both"
    assert boot_mode(gpt(BIOS_BOOT), []) == ""  # no boot code in the MBR
    assert boot_mode([], []) == ""


def test_a_uefi_only_guest_is_refused_by_a_bios_only_target_and_tells_the_providers() -> None:
    raw = dump(disks=gpt(ESP), esp_loaders=["/EFI/BOOT/BOOTX64.EFI"])
    assert "boot-mode" in codes(judge(raw, "rackspace"), "blocker")
    verdict = judge(raw, "azure")
    assert verdict.bootable and verdict.profile.boot_mode == "uefi"
    assert judge(dump(disks=[]), "gcp").blockers[0].code == "no-boot-loader"
