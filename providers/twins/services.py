"""The metadata services a twin serves, built from the service document in ``twin.json``.

``{"kind": "gce", "tree": {...}}``, ``{"kind": "openstack", "files": {path: base64}}`` or
``{"kind": "azure", ...}`` (see ``azure.py``); ``{"kind": "none"}`` for a Rackspace-like
cloud with no metadata service. The result maps each (link-local address, port) to its service.
"""

from __future__ import annotations

import base64
import functools
import os
from pathlib import Path
from typing import Any

from imagekit.providers.twins import azure, gce, openstack
from imagekit.providers.twins.answers import Service
from imagekit.providers.twins.clouds import ADDR_METADATA, ADDR_WIRESERVER


def _record(node_dir: Path, name: str, data: bytes) -> None:
    """Keep what the guest reported, renamed into place so readers never see half of it."""
    partial = node_dir / f".{name}.partial"
    partial.write_bytes(data)
    os.replace(partial, node_dir / name)


def build(doc: dict[str, Any], node_dir: Path) -> dict[tuple[str, int], Service]:
    """Each service by the (address, port) it answers on."""
    kind = doc["kind"]
    if kind == "gce":
        tree = doc["tree"]
        return {(ADDR_METADATA, 80): functools.partial(gce.answer, tree)}
    if kind == "openstack":
        files = {path: base64.b64decode(data) for path, data in doc["files"].items()}
        return {(ADDR_METADATA, 80): functools.partial(openstack.answer, files)}
    if kind == "azure":
        state = azure.WireState(
            goal_state=doc["goal_state"],
            vm_name=str(doc.get("vm_name", "vm")),
            on_health=lambda body: _record(node_dir, azure.HEALTH_FILE, body),
        )
        imds = doc["imds"]
        return {
            (ADDR_METADATA, 80): functools.partial(azure.imds_answer, imds),
            (ADDR_WIRESERVER, 80): functools.partial(azure.wire_answer, state),
            (ADDR_WIRESERVER, azure.HOST_PLUGIN_PORT): azure.host_plugin_answer,
        }
    if kind == "none":
        return {}
    raise ValueError(f"unknown twin service kind {kind!r}")


__all__ = ["build"]
