"""The GCE metadata server, as a guest on Compute Engine sees it. Pure.

Rules a guest depends on (Google's metadata server documentation; cloud-init's DataSourceGCE
and Google's guest agent read them):

- Everything lives under ``/computeMetadata/v1/``; a request without ``Metadata-Flavor: Google``
  or with ``X-Forwarded-For`` is refused with 403, and every answer carries
  ``Metadata-Flavor: Google`` (clients check it to know they reached the real server).
- A leaf answers its value as text (``?alt=json``: as JSON). A directory asked without its
  trailing slash redirects (301) to it; with the slash it lists its entries, one a line.
- ``?recursive=true`` (any case: cloud-init sends ``True``) answers the whole directory as JSON,
  with the server's own keys in camelCase (``machine-type`` → ``machineType``) and user-set
  attribute names as they are; ``?alt=text`` gives ``path value`` lines instead.
- ``instance/guest-attributes/`` takes PUTs (cloud-init publishes host keys there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from imagekit.providers.twins.answers import Reply, Request, listing, walk

PREFIX = "/computeMetadata/v1"
FLAVOR = (("Metadata-Flavor", "Google"), ("Server", "Metadata Server for VM"))
PROJECT_NUMBER = "271828182845"  # an invented project, fixed so answers are reproducible
# Keys whose children are named by users: left as they are in recursive answers.
_USER_KEYED = frozenset({"attributes", "guest-attributes"})


def instance_tree(
    *,
    instance_id: int,
    name: str,
    zone: str,
    machine_type: str,
    mac: str,
    ip: str,
    gateway: str,
    netmask: str,
    mtu: int,
    domain: str,
    user_data: str,
    ssh_keys: str,
    project: str,
) -> dict[str, Any]:
    """The ``computeMetadata/v1`` tree of one VM."""
    zone_path = f"projects/{PROJECT_NUMBER}/zones/{zone}"
    return {
        "instance": {
            "attributes": {"user-data": user_data, "ssh-keys": ssh_keys},
            "cpu-platform": "Intel Broadwell",
            "description": "",
            "guest-attributes": {},
            "hostname": f"{name}.{zone}.{domain}",
            "id": str(instance_id),
            "image": "",
            "machine-type": f"projects/{PROJECT_NUMBER}/machineTypes/{machine_type}",
            "name": name,
            "network-interfaces": [
                {
                    "access-configs": [],
                    "dns-servers": ["169.254.169.254"],
                    "gateway": gateway,
                    "ip": ip,
                    "mac": mac,
                    "mtu": str(mtu),
                    "network": f"projects/{PROJECT_NUMBER}/networks/default",
                    "subnetmask": netmask,
                }
            ],
            "scheduling": {"automatic-restart": "TRUE", "on-host-maintenance": "MIGRATE"},
            "service-accounts": {},
            "tags": "[]",
            "zone": zone_path,
        },
        "project": {
            "attributes": {},
            "numeric-project-id": PROJECT_NUMBER,
            "project-id": project,
        },
    }


def _camel(key: str) -> str:
    head, *rest = key.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _recursive(node: Any, user_keyed: bool = False) -> Any:
    if isinstance(node, Mapping):
        return {
            (key if user_keyed else _camel(key)): _recursive(value, key in _USER_KEYED)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_recursive(item) for item in node]
    return node


def _text_lines(node: Any, path: str = "") -> list[str]:
    if isinstance(node, Mapping):
        items: Any = node.items()
    elif isinstance(node, list):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return [f"{path} {node}".strip()]
    lines: list[str] = []
    for key, value in items:
        lines += _text_lines(value, f"{path}/{key}" if path else key)
    return lines


def _refused(why: str) -> Reply:
    return Reply(403, f"403 Forbidden: {why}\n".encode(), FLAVOR)


def answer(tree: dict[str, Any], request: Request) -> Reply:
    """The metadata server's reply to ``request`` (``tree`` takes guest-attribute PUTs)."""
    if request.header("x-forwarded-for") is not None:
        return _refused("requests with X-Forwarded-For are refused")
    if request.header("metadata-flavor") != "Google":
        return _refused("missing Metadata-Flavor: Google header")
    path = request.path
    if path in ("/", "/computeMetadata", "/computeMetadata/"):
        return Reply(200, b"v1/\n", FLAVOR)
    if not (path == PREFIX or path.startswith(PREFIX + "/")):
        return Reply(404, b"Not Found\n", FLAVOR)
    parts = [p for p in path[len(PREFIX) :].split("/") if p]
    if request.method == "PUT":
        return _put_guest_attribute(tree, parts, request.body)
    if request.method != "GET":
        return Reply(405, b"Method Not Allowed\n", FLAVOR)
    try:
        node = walk(tree, parts)
    except KeyError:
        return Reply(404, b"Not Found\n", FLAVOR)
    query = request.query
    is_dir = isinstance(node, Mapping | list)
    if query.get("recursive", "").lower() == "true" and is_dir:
        if query.get("alt") == "text":
            return Reply(200, "\n".join(_text_lines(node)).encode() + b"\n", FLAVOR)
        user_keyed = bool(parts) and parts[-1] in _USER_KEYED
        return Reply.json(_recursive(node, user_keyed), headers=FLAVOR)
    if is_dir:
        if parts and not path.endswith("/"):
            return Reply(301, b"", (*FLAVOR, ("Location", path + "/")))
        return Reply(200, listing(node).encode(), FLAVOR)
    if query.get("alt") == "json":
        return Reply(200, json.dumps(node).encode(), FLAVOR, "application/json")
    return Reply(200, str(node).encode(), FLAVOR)


def _put_guest_attribute(tree: dict[str, Any], parts: list[str], body: bytes) -> Reply:
    # instance/guest-attributes/NAMESPACE/KEY: the only writable part of the tree.
    if len(parts) != 4 or parts[:2] != ["instance", "guest-attributes"]:
        return Reply(403, b"403 Forbidden: read-only\n", FLAVOR)
    namespace = tree["instance"]["guest-attributes"].setdefault(parts[2], {})
    namespace[parts[3]] = body.decode("utf-8", "replace")
    return Reply(200, b"", FLAVOR)


__all__ = ["FLAVOR", "PREFIX", "answer", "instance_tree"]
