"""The OpenStack twin's config drive documents and metadata service (pure)."""

from __future__ import annotations

import json

from imagekit.providers.twins import openstack
from imagekit.providers.twins.answers import Request

UUID = "3f1b2c4d-0000-4000-8000-000000000001"


def files() -> dict[str, bytes]:
    return openstack.documents(
        uuid=UUID,
        name="db-1",
        mac="fa:16:3e:00:00:01",
        mtu=1450,
        user_data="#cloud-config\n",
        public_key="ssh-ed25519 AAAA run",
    )


def get(target: str, method: str = "GET"):
    return openstack.answer(files(), Request(method, target))


def test_config_drive_holds_what_configdrive_reads():
    docs = files()
    meta = json.loads(docs["openstack/latest/meta_data.json"])
    assert meta["uuid"] == UUID and meta["public_keys"] == {"imagekit": "ssh-ed25519 AAAA run"}
    network = json.loads(docs["openstack/latest/network_data.json"])
    assert network["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert network["links"][0]["mtu"] == 1450
    assert network["networks"][0]["type"] == "ipv4_dhcp"
    assert docs["openstack/latest/user_data"] == b"#cloud-config\n"
    assert "openstack/2018-08-27/meta_data.json" in docs and "ec2/latest/meta-data.json" in docs


def test_service_lists_versions_and_serves_documents():
    assert get("/openstack").body.decode().splitlines() == ["2018-08-27", "latest"]
    assert json.loads(get("/openstack/latest/meta_data.json").body)["name"] == "db-1"
    assert "user_data" in get("/openstack/latest/").body.decode().splitlines()
    assert get("/openstack/latest/nothing.json").status == 404


def test_service_has_the_ec2_compatible_tree():
    assert get("/latest/meta-data/instance-id").body.decode().startswith("i-")
    assert get("/2009-04-04/meta-data/public-keys").body == b"0=imagekit\n"
    assert get("/latest/meta-data/public-keys/0/openssh-key").body == b"ssh-ed25519 AAAA run"
    assert get("/latest/user-data").body == b"#cloud-config\n"
    assert get("/latest/meta-data/placement/availability-zone").body == b"nova"


def test_service_is_read_only():
    assert get("/openstack/latest/meta_data.json", method="POST").status == 405
