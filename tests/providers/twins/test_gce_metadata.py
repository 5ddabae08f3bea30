"""The GCE twin's metadata server against the rules guests rely on (pure: no network)."""

from __future__ import annotations

import json

import pytest

from imagekit.providers.twins import gce
from imagekit.providers.twins.answers import Request

GOOGLE = {"metadata-flavor": "Google"}


@pytest.fixture
def tree() -> dict:
    return gce.instance_tree(
        instance_id=4242,
        name="web-1",
        zone="europe-west1-b",
        machine_type="e2-small",
        mac="42:01:0a:00:00:01",
        ip="10.128.0.2",
        gateway="10.128.0.1",
        netmask="255.255.240.0",
        mtu=1460,
        domain="c.demo.internal",
        user_data="#cloud-config\n",
        ssh_keys="root:ssh-ed25519 AAAA test",
        project="demo",
    )


def get(tree: dict, target: str, headers: dict | None = None, method: str = "GET", body=b""):
    return gce.answer(tree, Request(method, target, GOOGLE if headers is None else headers, body))


def test_requests_without_the_flavor_header_are_refused(tree):
    reply = get(tree, "/computeMetadata/v1/instance/id", headers={})
    assert reply.status == 403
    wrong = get(tree, "/computeMetadata/v1/instance/id", headers={"metadata-flavor": "google"})
    assert wrong.status == 403


def test_forwarded_requests_are_refused(tree):
    headers = {**GOOGLE, "x-forwarded-for": "10.0.0.9"}
    assert get(tree, "/computeMetadata/v1/instance/id", headers=headers).status == 403


def test_every_answer_carries_the_flavor_header(tree):
    for target in ("/computeMetadata/v1/instance/id", "/computeMetadata/v1/nothing", "/"):
        assert ("Metadata-Flavor", "Google") in get(tree, target).headers


def test_leaves_answer_text_and_json(tree):
    assert get(tree, "/computeMetadata/v1/instance/id").body == b"4242"
    zone = get(tree, "/computeMetadata/v1/instance/zone").body.decode()
    assert zone.endswith("/zones/europe-west1-b") and zone.startswith("projects/")
    hostname = get(tree, "/computeMetadata/v1/instance/hostname").body
    assert hostname == b"web-1.europe-west1-b.c.demo.internal"
    assert get(tree, "/computeMetadata/v1/instance/id?alt=json").body == b'"4242"'


def test_a_directory_without_its_slash_redirects(tree):
    reply = get(tree, "/computeMetadata/v1/instance/attributes")
    assert reply.status == 301
    assert ("Location", "/computeMetadata/v1/instance/attributes/") in reply.headers


def test_a_directory_lists_its_entries(tree):
    listing = get(tree, "/computeMetadata/v1/instance/").body.decode().splitlines()
    assert "attributes/" in listing and "id" in listing and "network-interfaces/" in listing
    assert get(tree, "/computeMetadata/v1/instance/network-interfaces/").body == b"0/\n"


def test_recursive_is_json_with_camel_case_keys_but_user_attributes_as_named(tree):
    # cloud-init asks with recursive=True (capital T).
    doc = json.loads(get(tree, "/computeMetadata/v1/instance/?recursive=True").body)
    assert doc["machineType"].endswith("/machineTypes/e2-small")
    assert doc["networkInterfaces"][0]["mtu"] == "1460"
    assert doc["attributes"] == {
        "user-data": "#cloud-config\n",
        "ssh-keys": "root:ssh-ed25519 AAAA test",
    }
    attributes = json.loads(
        get(tree, "/computeMetadata/v1/instance/attributes/?recursive=true").body
    )
    assert "user-data" in attributes and "userData" not in attributes


def test_recursive_text_form(tree):
    text = get(tree, "/computeMetadata/v1/project/?recursive=true&alt=text").body.decode()
    assert "project-id demo" in text.splitlines()


def test_unknown_paths_are_404(tree):
    assert get(tree, "/computeMetadata/v1/instance/nothing").status == 404
    assert get(tree, "/latest/meta-data/instance-id").status == 404  # no EC2 tree on GCE


def test_guest_attributes_take_puts_and_nothing_else_does(tree):
    put = get(
        tree,
        "/computeMetadata/v1/instance/guest-attributes/hostkeys/ssh-ed25519",
        method="PUT",
        body=b"AAAA key",
    )
    assert put.status == 200
    assert (
        get(tree, "/computeMetadata/v1/instance/guest-attributes/hostkeys/ssh-ed25519").body
        == b"AAAA key"
    )
    assert get(tree, "/computeMetadata/v1/instance/id", method="PUT", body=b"1").status == 403
    assert get(tree, "/computeMetadata/v1/instance/id").body == b"4242"
