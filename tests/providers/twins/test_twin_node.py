"""A twin node's plumbing, on the real thing: namespace, supervisor, QEMU, dnsmasq, services.

Boots the small test disk (its guest does not matter here) on each twin and checks, from inside
the node's namespace, what a guest would reach; then that teardown — also after the node
process was killed outright — leaves no namespace, process or file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from imagekit.providers.base import Resource
from imagekit.providers.registry import create_provider
from imagekit.providers.twins import netns
from tests.providers.twins.conftest import imagekit_namespaces, processes_mentioning

pytestmark = pytest.mark.slow
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B t"

FETCH = """
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status, r.headers.get("Metadata-Flavor"), r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("Metadata-Flavor"), "")
"""


def inside(ns: str, url: str, *headers: str) -> str:
    """GET ``url`` from inside namespace ``ns``, as the guest's network sees it."""
    argv = ["ip", "netns", "exec", ns, "python3", "-c", FETCH, url, *headers]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout


def start(provider_name: str, test_disk: Path, state: Path, **settings: str):
    provider = create_provider(provider_name, state_dir=state, settings=settings)
    image = provider.driver.ex_register_image("t", test_disk, "raw")
    size = provider.driver.list_sizes()[0]
    node = provider.driver.create_node(
        "twin-t1", size, image, ex_user_data="#cloud-config\n", ex_guest_ports=(22, 80),
        ex_public_key=KEY,
    )  # fmt: skip
    return provider, node


def test_gcp_twin_node_serves_metadata_inside_its_namespace_only(root, test_disk, tmp_path):
    before = imagekit_namespaces()
    provider, node = start("gcp-twin", test_disk, tmp_path)
    ns = node.extra["netns"]
    try:
        assert ns in imagekit_namespaces()
        # QEMU runs inside the namespace, with GCE's identity.
        assert node.extra["pid"] in netns.pids(ns)
        argv = " ".join(node.extra["argv"])
        assert "product=Google Compute Engine" in argv and "scsi-hd" in argv
        assert "mac=42:01:0a:" in argv and "seed.iso" not in argv  # no NoCloud seed on a twin
        base = "http://169.254.169.254/computeMetadata/v1/instance"
        assert inside(ns, f"{base}/name", "Metadata-Flavor: Google").split()[:3] == [
            "200", "Google", "twin-t1",
        ]  # fmt: skip
        assert inside(ns, f"{base}/name").split()[0] == "403"
        keys = inside(ns, f"{base}/attributes/ssh-keys", "Metadata-Flavor: Google")
        assert "root:ssh-ed25519 " in keys
        # The host forwards are on 127.0.0.1 of the host, not in the namespace.
        ports = node.extra["ports"]
        assert set(ports) == {22, 80}
        dns = (tmp_path / "twins/gcp/nodes/twin-t1/twin.json").read_text()
        assert "--dhcp-option=option:mtu,1460" in dns
        assert "--host-record=metadata.google.internal,169.254.169.254" in dns
    finally:
        assert provider.delete(Resource("node", str(node.id)))
    assert imagekit_namespaces() == before
    assert processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "twins/gcp/nodes/twin-t1").exists()
    assert provider.delete(Resource("node", str(node.id))) is False  # idempotent
    assert provider.delete(Resource("netns", ns)) is False


def test_openstack_twin_attaches_a_config_drive_and_serves_nova_metadata(root, test_disk, tmp_path):
    provider, node = start("openstack-twin", test_disk, tmp_path, metadata="both")
    ns = node.extra["netns"]
    try:
        argv = node.extra["argv"]
        assert any("config-2.iso" in a for a in argv) and "virtio-blk-pci,drive=disk0" in argv
        meta = inside(ns, "http://169.254.169.254/openstack/latest/meta_data.json")
        status, _, body = meta.split(" ", 2)
        assert status == "200" and json.loads(body)["name"] == "twin-t1"
    finally:
        provider.delete(Resource("node", str(node.id)))
    assert ns not in imagekit_namespaces()


def test_a_killed_node_process_is_still_torn_down_completely(root, test_disk, tmp_path):
    provider, node = start("azure-twin", test_disk, tmp_path, os_state="specialized")
    ns = node.extra["netns"]
    qemu = node.extra["pid"]
    os.kill(node.extra["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while qemu in netns.pids(ns) and time.monotonic() < deadline:
        time.sleep(0.1)  # QEMU and dnsmasq die with their parent (PR_SET_PDEATHSIG)
    assert qemu not in netns.pids(ns)
    assert provider.delete(Resource("node", str(node.id)))
    assert ns not in imagekit_namespaces()
    assert processes_mentioning(str(tmp_path)) == []


def test_gcp_twin_attaches_nvme_disks_when_asked(root, test_disk, tmp_path):
    provider, node = start("gcp-twin", test_disk, tmp_path, disk_interface="nvme")
    try:
        argv = node.extra["argv"]
        assert "nvme,drive=disk0,serial=persistent-disk-0" in argv
        assert not any(a.startswith("scsi-hd") for a in argv)
    finally:
        provider.delete(Resource("node", str(node.id)))


def test_a_twin_refuses_unknown_setting_values(tmp_path):
    from imagekit.errors import UsageError

    with pytest.raises(UsageError, match="metadata 'both-ways': use one of"):
        create_provider("openstack-twin", state_dir=tmp_path, settings={"metadata": "both-ways"})
    with pytest.raises(UsageError, match="unknown settings"):
        create_provider("gcp-twin", state_dir=tmp_path, settings={"region": "x"})
    with pytest.raises(UsageError, match="disk_interface 'ide'"):
        create_provider("gcp-twin", state_dir=tmp_path, settings={"disk_interface": "ide"})
