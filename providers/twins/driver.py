"""A libcloud ``NodeDriver`` for twin nodes: local QEMU dressed as one cloud's VM.

Images are registered as the local driver registers them (same ``images/`` folder layout);
a node is a supervisor process (``supervisor.py``) in the node's own network namespace
(``netns.py``), which runs QEMU with the cloud's SMBIOS identity, disk bus and MAC range,
dnsmasq with the cloud's DHCP and DNS, and the cloud's metadata services. State under
``root``::

    nodes/<node>/twin.json    what the supervisor runs (argv, services, forwards)
    nodes/<node>/state.json   written by the supervisor once up: host ports, child pids
    nodes/<node>/node.json    the node record (as the local driver's, plus the namespace)
    nodes/<node>/             serial log, QEMU's stderr, dnsmasq's log, twin.log, media ISO
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libcloud.compute.base import Node, NodeImage, NodeSize

from imagekit.convert import TARGETS
from imagekit.errors import ProviderError
from imagekit.providers.local import process
from imagekit.providers.local.driver import QemuNodeDriver, _read_json, _write_json
from imagekit.providers.local.qemu import (
    ENTROPY,
    VMSpec,
    detect_accel,
    drive_path,
    firmware_argv,
    machine_argv,
    tail,
)
from imagekit.providers.local.seed import write_iso
from imagekit.providers.twins import netns
from imagekit.providers.twins.clouds import Cloud, disk_args, node_mac, smbios_args
from imagekit.providers.twins.present import NodeFacts, present

START_TIMEOUT = 15.0  # the supervisor binds, enters the namespace and starts two children
SUPERVISOR = "imagekit.providers.twins.supervisor"


def dnsmasq_argv(cloud: Cloud, *, mac: str, hostname: str, node_dir: Path) -> list[str]:
    """dnsmasq serving the one guest: its fixed address, the cloud's MTU, router and DNS."""
    net = cloud.network
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",  # nothing upstream: the namespace reaches no other resolver
        "--no-hosts",
        "--user=root",
        f"--interface={netns.BRIDGE}",
        "--bind-interfaces",
        "--dhcp-authoritative",
        f"--dhcp-range={net.guest},static,{net.netmask},12h",
        f"--dhcp-host={mac},{net.guest},{hostname}",
        f"--dhcp-option=option:router,{net.gateway.ip}",
        f"--dhcp-option=option:dns-server,{net.dns}",
        f"--dhcp-option=option:mtu,{net.mtu}",
        f"--dhcp-option=option:domain-search,{net.domain}",
        f"--domain={net.domain}",
        f"--host-record={hostname}.{net.domain},{hostname},{net.guest}",
        f"--dhcp-leasefile={node_dir / 'dnsmasq.leases'}",
        "--log-dhcp",
        "--log-queries",
    ]
    argv += [f"--host-record={name},{address}" for name, address in cloud.dns_records]
    argv += [f"--dhcp-option={option}" for option in cloud.dhcp_options]
    return argv


class TwinNodeDriver(QemuNodeDriver):
    name = "imagekit twin"
    type = "imagekit-twin"

    def __init__(
        self,
        root: Path,
        cloud: Cloud,
        settings: Mapping[str, str] | None = None,
        accel: Any = None,
    ):
        super().__init__(root, accel=accel)
        self.cloud = cloud
        self.cloud_settings = dict(settings or {})

    def create_node(  # type: ignore[override]
        self,
        name: str,
        size: NodeSize,
        image: NodeImage,
        *,
        ex_user_data: str,
        ex_guest_ports: Sequence[int] = (22, 80),
        ex_public_key: str | None = None,
    ) -> Node:
        workdir = self._new_node_dir(name, image)
        ns = netns.name_for(name)
        try:
            return self._start(
                name, size, image, workdir, ns, ex_user_data, ex_guest_ports, ex_public_key
            )
        except BaseException:
            self._cleanup(workdir, ns)
            raise

    def _start(
        self,
        name: str,
        size: NodeSize,
        image: NodeImage,
        workdir: Path,
        ns: str,
        user_data: str,
        guest_ports: Sequence[int],
        public_key: str | None,
    ) -> Node:
        doc = image.extra
        number = int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big")
        facts = NodeFacts(
            name=name,
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.imagekit-twin")),
            number=number,
            mac=node_mac(self.cloud, number),
            user_data=user_data,
            public_key=public_key,
            machine_type=str(size.id),
        )
        shown = present(self.cloud, facts, self.cloud_settings)
        fmt = TARGETS[doc["disk_format"]].qemu_format
        spec = VMSpec(
            disk=Path(doc["disk"]),
            disk_format=fmt,
            memory_mib=int(size.ram),
            cpus=int((size.extra or {}).get("vcpus", 1)),
        )
        accel = self.accel or detect_accel()
        serial = workdir / "serial.log"
        argv = machine_argv(spec, accel=accel, serial_log=serial, pid_file=workdir / "qemu.pid")
        argv += firmware_argv(doc.get("firmware", "bios"), workdir / "efivars.fd")
        argv += smbios_args(self.cloud, serial=facts.uuid.replace("-", "")[:20], uuid=facts.uuid)
        drives = [f"file={drive_path(spec.disk)},format={fmt},snapshot=on"]
        drives += [
            f"file={drive_path(Path(p))},format={fmt},snapshot=on"
            for p in doc.get("extra_disks") or ()
        ]
        bus = "nvme" if self.cloud_settings.get("disk_interface") == "nvme" else None
        argv += disk_args(self.cloud, drives, bus)
        if shown.media is not None:
            label = shown.media_label or "media"
            iso = write_iso(workdir / f"{label}.iso", label, shown.media)
            argv += ["-drive", f"file={drive_path(iso)},if=ide,media=cdrom,format=raw,readonly=on"]
        argv += [
            "-netdev",
            f"tap,id=n0,ifname={netns.TAP},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={facts.mac},romfile=",
            *ENTROPY,
        ]
        netns.create(ns, self.cloud)
        config = workdir / "twin.json"
        _write_json(
            config,
            {
                "netns": ns,
                "guest_ip": str(self.cloud.network.guest),
                "guest_ports": list(guest_ports),
                "service": shown.service,
                "qemu": argv,
                "dnsmasq": dnsmasq_argv(self.cloud, mac=facts.mac, hostname=name, node_dir=workdir),
            },
        )
        config.chmod(0o600)  # holds the run's user-data (host key included)
        with (workdir / "twin.log").open("ab") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        process.adopt(supervisor)
        state = self._wait_started(supervisor, workdir)
        record = {
            "name": name,
            "cloud": self.cloud.name,
            "netns": ns,
            "pid": int(state["qemu_pid"]),
            "supervisor_pid": supervisor.pid,
            "supervisor_marker": str(config),
            "ports": state["ports"],
            "serial_log": str(serial),
            "stderr_log": str(workdir / "qemu.stderr"),
            "size": size.id,
            "image": image.id,
            "accel": accel,
            "mac": facts.mac,
            "guest_ip": str(self.cloud.network.guest),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "argv": argv,
        }
        _write_json(workdir / "node.json", record)
        return self._node(record, size=size, image=image)

    def _wait_started(self, supervisor: subprocess.Popen[bytes], workdir: Path) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = _read_json(workdir / "state.json")
            if state is not None:
                time.sleep(0.3)  # QEMU fails on a bad option within this
                if process.is_running(int(state["qemu_pid"]), str(workdir / "serial.log")):
                    return state
                raise ProviderError(
                    f"QEMU failed to start: {tail(workdir / 'qemu.stderr', 5) or 'no message'}"
                )
            if supervisor.poll() is not None:
                raise ProviderError(
                    f"twin supervisor exited (status {supervisor.returncode}): "
                    f"{tail(workdir / 'twin.log', 5) or 'no message'}"
                )
            time.sleep(0.05)
        raise ProviderError(f"twin supervisor not up within {START_TIMEOUT:g} s")

    def _cleanup(self, workdir: Path, ns: str) -> None:
        record = _read_json(workdir / "node.json") or {}
        marker = str(workdir / "twin.json")
        pid = record.get("supervisor_pid")
        if pid is not None:
            process.stop(int(pid), marker)
        netns.delete(ns)  # ends whatever still runs in it (QEMU, dnsmasq, the supervisor)
        shutil.rmtree(workdir, ignore_errors=True)

    def destroy_node(self, node: Node) -> bool:
        workdir = self._nodes / str(node.id)
        record = _read_json(workdir / "node.json")
        if record is None:
            if workdir.is_dir():  # a start that died before its record: still ours to clean
                self._cleanup(workdir, netns.name_for(str(node.id)))
                return True
            return False
        process.stop(int(record["supervisor_pid"]), record["supervisor_marker"])
        process.stop(int(record["pid"]), record["serial_log"])
        self._cleanup(workdir, record["netns"])
        return True

    def ex_twin_file(self, node: Node, name: str) -> Path:
        """A file the twin keeps for ``node`` (what its services recorded)."""
        return self._nodes / str(node.id) / name

    def ex_service_log(self, node: Node) -> str:
        return tail(self._nodes / str(node.id) / "twin.log", 1_000_000)


__all__ = ["TwinNodeDriver", "dnsmasq_argv"]
