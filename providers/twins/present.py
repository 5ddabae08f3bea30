"""What a twin hands one node: its metadata service document and the media it attaches. Pure.

The cloud's own rules decide: GCE gives only the metadata server (user-data and ``ssh-keys``
as instance attributes); Nova a config drive and/or the metadata service (``metadata``
setting; Rackspace: config drive only); Azure the provisioning ISO with ``ovf-env.xml`` plus IMDS
and the wireserver.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from imagekit.providers.twins import azure, gce, openstack
from imagekit.providers.twins.clouds import Cloud
from imagekit.providers.twins.node import NodeFacts, Presentation


def present(cloud: Cloud, node: NodeFacts, settings: Mapping[str, str]) -> Presentation:
    if cloud.name == "gcp":
        net = cloud.network
        # GCE's ssh-keys attribute is "user:key" lines; cloud-init takes only its default user's
        # and "cloudinit", the guest agent every user's. The run's user-data carries root's key.
        keys = f"{node.ssh_user}:{node.public_key}" if node.public_key else ""
        tree = gce.instance_tree(
            instance_id=node.number,
            name=node.name,
            zone=settings.get("zone", "us-central1-a"),
            machine_type=node.machine_type,
            mac=node.mac,
            ip=str(net.guest),
            gateway=str(net.gateway.ip),
            netmask=net.netmask,
            mtu=net.mtu,
            domain=net.domain,
            user_data=node.user_data,
            ssh_keys=keys,
            project=settings.get("project", "imagekit-twin"),
        )
        return Presentation({"kind": "gce", "tree": tree})
    if cloud.name == "openstack":
        files = openstack.documents(
            uuid=node.uuid,
            name=node.name,
            mac=node.mac,
            mtu=cloud.network.mtu,
            user_data=node.user_data,
            public_key=node.public_key,
        )
        mode = settings.get("metadata", "both")
        service: dict[str, object] = {"kind": "none"}
        if mode in ("service", "both"):
            encoded = {p: base64.b64encode(d).decode() for p, d in files.items()}
            service = {"kind": "openstack", "files": encoded}
        drive = files if mode in ("configdrive", "both") else None
        return Presentation(service, drive, openstack.CONFIG_DRIVE_LABEL if drive else None)
    if cloud.name == "azure":
        return azure.presentation(cloud, node, settings)
    raise ValueError(f"no presentation for cloud {cloud.name!r}")


__all__ = ["NodeFacts", "Presentation", "present"]
