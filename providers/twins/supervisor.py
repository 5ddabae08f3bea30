"""One twin node's process: ``python -m imagekit.providers.twins.supervisor NODE_DIR/twin.json``.

It outlives ``imagekit boot`` (started in its own session, like a local node's QEMU) and does,
in this order, so every socket lands in the right network namespace:

1. bind one listener per exposed guest port on 127.0.0.1 of the host (port 0: the kernel picks);
2. enter the node's namespace (``setns``; sockets already made stay where they were made);
3. serve the cloud's metadata services on their link-local addresses;
4. start dnsmasq (DHCP with the cloud's MTU, DNS for the cloud's names) and QEMU as children
   that die with it (``PR_SET_PDEATHSIG``);
5. forward each accepted host connection to the guest's address, from inside the namespace;
6. write ``state.json`` (host ports, child pids) — the driver waits for it — and wait.

SIGTERM stops QEMU and dnsmasq and exits. What the guest asked the services goes, one line a
request, to ``twin.log``; a service's record of the guest's reports (Azure's Ready) to files in
the node folder named by the service.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from imagekit.providers.twins import services
from imagekit.providers.twins.server import serve

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
CONNECT_TIMEOUT = 2.0  # the guest is on the same bridge: it answers or refuses at once
STOP_GRACE = 5.0
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _forward(client: socket.socket, guest: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(guest, timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()  # refused or unreachable: the client sees the connection closed
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_loop(listener: socket.socket, guest: tuple[str, int]) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_forward, args=(client, guest), daemon=True).start()


def _write_state(path: Path, doc: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(partial, path)


def run(config_path: Path) -> int:
    config = json.loads(config_path.read_text())
    node_dir = config_path.parent
    listeners: dict[int, socket.socket] = {}
    for guest_port in config["guest_ports"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        listeners[int(guest_port)] = sock
    enter_netns(config["netns"])
    for (address, port), service in services.build(config["service"], node_dir).items():
        serve(service, address, port)
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with (node_dir / "dnsmasq.log").open("ab") as dns_log:
        children.append(
            subprocess.Popen(
                config["dnsmasq"],
                stdin=subprocess.DEVNULL,
                stdout=dns_log,
                stderr=dns_log,
                preexec_fn=_die_with_parent,
            )
        )
    with (node_dir / "qemu.stderr").open("wb") as qemu_err:
        qemu = subprocess.Popen(
            config["qemu"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=qemu_err,
            preexec_fn=_die_with_parent,
        )
    children.append(qemu)
    guest_ip = config["guest_ip"]
    for guest_port, sock in listeners.items():
        threading.Thread(
            target=_accept_loop, args=(sock, (guest_ip, guest_port)), daemon=True
        ).start()
    _write_state(
        node_dir / "state.json",
        {
            "ports": {str(g): s.getsockname()[1] for g, s in listeners.items()},
            "qemu_pid": qemu.pid,
            "dnsmasq_pid": children[0].pid,
        },
    )
    while not stopping.wait(0.2):
        if children[0].poll() is not None and qemu.poll() is None:
            print("dnsmasq exited: the guest has no DHCP or DNS", file=sys.stderr, flush=True)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m imagekit.providers.twins.supervisor TWIN_JSON", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
