"""Reading facts from agent dumps: the merges and fallbacks the rules rely on. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.errors import GuestError
from imagekit.guest.facts import (
    parse_cloud_init,
    parse_cmdline,
    parse_facts,
    parse_fstab,
    parse_kernels,
    parse_time_sources,
)
from imagekit.guest.libguestfs import PYTHON_ENV, GuestfsSession, kernel_environment
from tests.guest.test_rules import dump


def test_cloud_init_merges_its_drop_ins_in_name_order_the_last_list_winning() -> None:
    files = {
        "/etc/cloud/cloud.cfg": "datasource_list: [ NoCloud, Ec2 ]\n",
        "/etc/cloud/cloud.cfg.d/90_dpkg.cfg": "datasource_list: [ Ec2, None ]\n",
        # Not YAML: skipped, as cloud-init skips it.
        "/etc/cloud/cloud.cfg.d/50-broken.cfg": "datasource_list: [ GCE\n",
        "/etc/cloud/cloud.cfg.d/95-one.cfg": "datasource_list: Azure\n",
    }
    ci = parse_cloud_init(files, {"cloud-init": "22.4.2"}, {}, (), ())
    assert ci is not None and ci.datasources == ("Azure",)
    assert ci.datasource_file.endswith("95-one.cfg") and not ci.disabled


@pytest.mark.parametrize(
    ("files", "units", "cmdline", "why"),
    [
        ({"/etc/cloud/cloud-init.disabled": ""}, {}, (), "cloud-init.disabled"),
        ({}, {}, ("cloud-init=disabled",), "kernel command line"),
        ({}, {"cloud-init.service": "masked"}, (), "masked"),
        ({}, {"cloud-init.service": "disabled"}, (), "not enabled"),
    ],
)
def test_every_way_cloud_init_is_turned_off_is_seen(
    files: dict[str, str], units: dict[str, str], cmdline: tuple[str, ...], why: str
) -> None:
    ci = parse_cloud_init({"/etc/cloud/cloud.cfg": "{}\n", **files}, {}, units, cmdline, ())
    assert ci is not None and why in ci.disabled


def test_no_cloud_init_is_none_and_network_config_disabled_is_read() -> None:
    assert parse_cloud_init({}, {}, {}, (), ()) is None
    files = {"/etc/cloud/cloud.cfg.d/99-net.cfg": "network: {config: disabled}\n"}
    ci = parse_cloud_init(files, {"cloud-init": "22.4"}, {}, (), ())
    assert ci is not None and ci.network_disabled and ci.datasources is None


def test_the_kernel_line_comes_from_grub_cfg_else_the_defaults() -> None:
    cfg = {"/boot/grub/grub.cfg": "menuentry x {\n  linux /vmlinuz root=/dev/sda1 quiet\n}\n"}
    assert parse_cmdline(cfg) == (("root=/dev/sda1", "quiet"), "grub")
    defaults = {
        "/etc/default/grub": (
            'GRUB_CMDLINE_LINUX="console=ttyS0"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
        )
    }
    assert parse_cmdline(defaults) == (("console=ttyS0", "quiet"), "grub")
    assert parse_cmdline({"/boot/grub2/grub.cfg": "linux16 /vmlinuz ro\n"}) == (("ro",), "grub2")


def test_kernels_newest_first_and_module_names_normalised() -> None:
    kernels = parse_kernels(
        [
            {"version": "6.1.0-9-amd64", "initrd_modules": ["virtio-blk.ko.zst"], "installed": []},
            {"version": "6.1.0-28-amd64", "initrd_modules": None, "builtin": ["a/nvme.ko"]},
        ]
    )
    assert [k.version for k in kernels] == ["6.1.0-28-amd64", "6.1.0-9-amd64"]
    assert kernels[0].initrd_modules is None and kernels[0].boot_drivers() == {"nvme"}
    assert kernels[1].initrd_modules == {"virtio_blk"}


def test_fstab_and_time_sources() -> None:
    entries = parse_fstab("# c\nUUID=x / ext4 defaults 0 1\n/dev/xvdb /d xfs\n\nbroken line\n")
    assert [(e.line, e.spec, e.options) for e in entries] == [
        (2, "UUID=x", ("defaults",)),
        (3, "/dev/xvdb", ("defaults",)),
    ]
    sources, sourcedir = parse_time_sources(
        {
            "/etc/chrony/chrony.conf": (
                "pool 2.debian.pool.ntp.org iburst\nsourcedir /etc/chrony/sources.d\n"
            ),
            "/etc/chrony/sources.d/aws.sources": "server 169.254.169.123 prefer\n",
            "/etc/systemd/timesyncd.conf": "[Time]\nNTP=time.example\n",
        }
    )
    assert sources == ("2.debian.pool.ntp.org", "169.254.169.123", "time.example") and sourcedir


def test_the_facts_report_keeps_the_drivers_not_thousands_of_modules() -> None:
    raw = dump()
    raw["kernels"][0]["installed"] += [f"kernel/x/m{i}.ko" for i in range(3000)]
    doc = parse_facts(raw).as_dict()
    assert "files" not in doc
    assert "m17" not in doc["kernels"][0]["installed"]
    assert "virtio_blk" in doc["kernels"][0]["installed"]


def test_a_missing_interpreter_or_kernel_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-python"))
    session = GuestfsSession([(tmp_path / "d.raw", "raw")], writable=False, log=tmp_path / "l")
    with pytest.raises(GuestError, match=r"needs .*no-python") as caught:
        session.__enter__()
    assert "python3-guestfs" in str(caught.value)
    with pytest.raises(GuestError, match="no boot/vmlinuz"):
        kernel_environment(tmp_path)
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "vmlinuz-6.1.0-9").touch()
    with pytest.raises(GuestError, match=r"modules\.dep is missing.*depmod"):
        kernel_environment(tmp_path)


def test_stream_vmdk_cannot_be_adapted_in_place(tmp_path: Path) -> None:
    session = GuestfsSession([(tmp_path / "d.vmdk", "vmdk")], writable=True, log=tmp_path / "l")
    with pytest.raises(GuestError, match="cannot write vmdk"):
        session.__enter__()
