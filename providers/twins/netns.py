"""The network namespace a twin node lives in: its own link, DHCP, DNS and link-local services.

A twin cannot use QEMU's user-mode network: it drops every UDP packet but DHCP in restricted
mode (so no DNS answer for ``metadata.google.internal``) and forwards guest connections only to
addresses inside its own subnet (169.254.169.254 and 168.63.129.16 are not). So each node gets a
namespace made here, as root::

    ip netns  imagekit-<node>       nothing in it reaches the host's network or the outside
      br0     gateway/prefix, 169.254.169.254/32 (+ 168.63.129.16/32 for Azure), up
      tap0    QEMU's NIC, enslaved to br0

and the node's processes (QEMU, dnsmasq, the metadata services) run inside it. The namespace
has no route out and no link to the host: the only way in is the supervisor's forwards from
127.0.0.1 (see ``supervisor.py``). ``delete`` ends what still runs inside (only processes of
this namespace, which only imagekit started) and removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from imagekit.errors import ProviderError
from imagekit.providers.twins.clouds import Cloud

NETNS_DIR = Path("/run/netns")
PREFIX = "imagekit-"
BRIDGE, TAP = "br0", "tap0"
_NAME = re.compile(r"^imagekit-[a-z0-9][a-z0-9-]{0,62}$")
KILL_WAIT = 5.0


def name_for(node: str) -> str:
    return f"{PREFIX}{node}"


def _ip(*argv: str, netns: str | None = None) -> str:
    full = ["ip", *(["-n", netns] if netns else []), *argv]
    try:
        done = subprocess.run(full, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ProviderError("ip not found", hint="apt-get install iproute2") from exc
    if done.returncode != 0:
        raise ProviderError(f"`{' '.join(full)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def require_root(provider: str) -> None:
    if os.geteuid() != 0:
        raise ProviderError(
            f"{provider} needs root: each node gets its own network namespace and tap device",
            hint="run as root, or rehearse on the `local` provider",
        )


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create(name: str, cloud: Cloud) -> None:
    """The namespace ``name`` with the cloud's gateway and service addresses on ``br0``."""
    if not _NAME.match(name):
        raise ProviderError(f"invalid namespace name {name!r}")
    if exists(name):
        raise ProviderError(
            f"network namespace {name} already exists",
            hint="a node of that name is running: `imagekit runs`, then `imagekit teardown`",
        )
    _ip("netns", "add", name)
    try:
        _ip("link", "set", "lo", "up", netns=name)
        _ip("link", "add", BRIDGE, "type", "bridge", netns=name)
        _ip("tuntap", "add", "dev", TAP, "mode", "tap", netns=name)
        _ip("link", "set", TAP, "master", BRIDGE, netns=name)
        _ip("addr", "add", str(cloud.network.gateway), "dev", BRIDGE, netns=name)
        for address in cloud.services:
            _ip("addr", "add", f"{address}/32", "dev", BRIDGE, netns=name)
        _ip("link", "set", BRIDGE, "mtu", str(cloud.network.mtu), "up", netns=name)
        _ip("link", "set", TAP, "mtu", str(cloud.network.mtu), "up", netns=name)
    except BaseException:
        delete(name)
        raise


def pids(name: str) -> list[int]:
    if not exists(name):
        return []
    return [int(p) for p in _ip("netns", "pids", name).split()]


def delete(name: str) -> bool:
    """End what runs in ``name`` and remove it: True if it existed (idempotent)."""
    if not _NAME.match(name) or not exists(name):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + KILL_WAIT
        while pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids(name):
            break
    left = pids(name)
    if left:
        raise ProviderError(f"processes {left} in network namespace {name} survived SIGKILL")
    _ip("netns", "delete", name)
    return True


__all__ = ["BRIDGE", "TAP", "create", "delete", "exists", "name_for", "pids", "require_root"]
