"""What Nova gives a guest: the config drive's files and the metadata service. Pure.

Both carry one tree (Nova's ``openstack/<version>/`` documents and the EC2-compatible
``<version>/meta-data`` tree); cloud-init's ConfigDrive datasource reads it from an ISO 9660
filesystem labelled ``config-2``, its OpenStack datasource from http://169.254.169.254/. The
metadata service answers ``/openstack`` with the versions it has and each document at
``/openstack/<version>/<name>``, ``/<version>/meta-data/...`` as EC2's service does.
"""

from __future__ import annotations

import json
from typing import Any

from imagekit.providers.twins.answers import Reply, Request, listing, walk

CONFIG_DRIVE_LABEL = "config-2"
# The newest metadata version cloud-init 22.4 knows, and "latest", which every reader tries first.
VERSIONS = ("2018-08-27", "latest")
EC2_VERSION = "2009-04-04"


def documents(
    *,
    uuid: str,
    name: str,
    mac: str,
    mtu: int,
    user_data: str,
    public_key: str | None,
) -> dict[str, bytes]:
    """The config drive's files, by path (``openstack/latest/meta_data.json`` …)."""
    keys = {"imagekit": public_key} if public_key else {}
    meta = {
        "uuid": uuid,
        "name": name,
        "hostname": f"{name}.novalocal",
        "availability_zone": "nova",
        "launch_index": 0,
        "project_id": "0" * 32,
        "public_keys": keys,
        "keys": [{"name": k, "type": "ssh", "data": v} for k, v in keys.items()],
        "devices": [],
        "meta": {},
    }
    link = f"tap{uuid[:11]}"
    network = {
        "links": [
            {"id": link, "type": "ovs", "ethernet_mac_address": mac, "mtu": mtu, "vif_id": uuid}
        ],
        "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": link, "network_id": uuid}],
        "services": [],
    }
    files: dict[str, bytes] = {}
    for version in VERSIONS:
        base = f"openstack/{version}"
        files[f"{base}/meta_data.json"] = json.dumps(meta).encode()
        files[f"{base}/network_data.json"] = json.dumps(network).encode()
        files[f"{base}/vendor_data.json"] = b"{}"
        files[f"{base}/vendor_data2.json"] = b"{}"
        files[f"{base}/user_data"] = user_data.encode()
    ec2 = {
        "ami-id": "ami-00000001",
        "hostname": f"{name}.novalocal",
        "instance-id": "i-" + uuid.replace("-", "")[:8],
        "instance-type": "m1.small",
        "local-hostname": f"{name}.novalocal",
        "placement": {"availability-zone": "nova"},
        "public-keys": {"0": {"openssh-key": public_key}} if public_key else {},
    }
    for version in (EC2_VERSION, "latest"):
        files[f"ec2/{version}/meta-data.json"] = json.dumps(ec2).encode()
        files[f"ec2/{version}/user-data"] = user_data.encode()
    return files


def _ec2_tree(files: dict[str, bytes]) -> dict[str, Any]:
    meta = json.loads(files[f"ec2/{EC2_VERSION}/meta-data.json"])
    keys = meta.pop("public-keys")
    tree: dict[str, Any] = dict(meta)
    # EC2's tree lists keys as "0=name" and serves the key at 0/openssh-key.
    tree["public-keys"] = {"0": keys["0"]} if keys else {}
    return tree


def answer(files: dict[str, bytes], request: Request) -> Reply:
    """The Nova metadata service's reply, served from the config drive's documents."""
    if request.method != "GET":
        return Reply(405, b"405 Method Not Allowed\n")
    parts = [p for p in request.path.split("/") if p]
    if not parts:
        return Reply(200, ("\n".join((EC2_VERSION, "latest")) + "\n").encode())
    if parts[0] == "openstack":
        if len(parts) == 1:
            return Reply(200, ("\n".join(VERSIONS) + "\n").encode())
        document = files.get("/".join(parts))
        if document is not None:
            is_json = parts[-1].endswith(".json")
            return Reply(200, document, (), "application/json" if is_json else "text/plain")
        if len(parts) == 2 and parts[1] in VERSIONS:
            inside = f"openstack/{parts[1]}/"
            names = sorted(p.rsplit("/", 1)[1] for p in files if p.startswith(inside))
            return Reply(200, ("\n".join(names) + "\n").encode())
        return Reply(404, b"404 Not Found\n")
    if parts[0] in (EC2_VERSION, "latest"):
        if parts[1:] == ["user-data"]:
            return Reply(200, files[f"ec2/{EC2_VERSION}/user-data"])
        if len(parts) == 1:
            return Reply(200, b"meta-data/\nuser-data\n")
        if parts[1] == "meta-data":
            return _ec2_meta(_ec2_tree(files), parts[2:])
    return Reply(404, b"404 Not Found\n")


def _ec2_meta(tree: dict[str, Any], parts: list[str]) -> Reply:
    if parts == ["public-keys"]:
        return Reply(200, b"0=imagekit\n" if tree["public-keys"] else b"")
    try:
        node = walk(tree, parts)
    except KeyError:
        return Reply(404, b"404 Not Found\n")
    if isinstance(node, dict):
        return Reply(200, listing(node).encode())
    return Reply(200, str(node).encode())


__all__ = ["CONFIG_DRIVE_LABEL", "answer", "documents"]
