"""The Azure twin's provisioning media, IMDS and wireserver (pure)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import pytest

from imagekit.providers.twins import azure
from imagekit.providers.twins.answers import Request
from imagekit.providers.twins.clouds import AZURE

NS = {"wa": "http://schemas.microsoft.com/windowsazure"}
GOAL = {"incarnation": "1", "container_id": "c-1", "instance_id": "i-1._vm"}


def test_ovf_env_has_what_cloud_init_requires():
    ovf = azure.ovf_env(
        hostname="vm-1", public_key="ssh-ed25519 AAAA <k>", custom_data="#cloud-config\n"
    )
    root = ET.fromstring(ovf)
    section = root.find("./wa:ProvisioningSection/wa:LinuxProvisioningConfigurationSet", NS)
    assert section is not None
    assert section.find("wa:UserName", NS).text == azure.ADMIN_USER != "root"
    assert section.find("wa:HostName", NS).text == "vm-1"
    value = section.find("wa:SSH/wa:PublicKeys/wa:PublicKey/wa:Value", NS).text
    assert value == "ssh-ed25519 AAAA <k>"  # escaped in the XML, intact once parsed
    custom = base64.b64decode(section.find("wa:CustomData", NS).text)
    assert custom == b"#cloud-config\n"
    assert root.find("./wa:PlatformSettingsSection/wa:PlatformSettings", NS) is not None


@pytest.fixture
def imds() -> dict:
    return azure.imds_document(
        AZURE,
        name="vm-1",
        vm_id="uuid-1",
        mac="00:0d:3a:01:02:03",
        vm_size="Standard_B2s",
        public_key="ssh-ed25519 AAAA k",
    )


def ask(doc, target, headers=None):
    return azure.imds_answer(
        doc, Request("GET", target, {"metadata": "true"} if headers is None else headers)
    )


def test_imds_refuses_without_header_api_version_or_with_forwarding(imds):
    assert ask(imds, "/metadata/instance?api-version=2021-08-01", headers={}).status == 400
    assert ask(imds, "/metadata/instance").status == 400
    forwarded = {"metadata": "true", "x-forwarded-for": "1.2.3.4"}
    assert ask(imds, "/metadata/instance?api-version=2021-08-01", headers=forwarded).status == 400


def test_imds_answers_the_instance(imds):
    doc = json.loads(ask(imds, "/metadata/instance?api-version=2021-08-01").body)
    nic = doc["network"]["interface"][0]
    assert nic["macAddress"] == "000D3A010203"  # Azure's form: no colons, upper case
    assert nic["ipv4"]["ipAddress"][0]["privateIpAddress"] == "10.0.0.4"
    assert doc["compute"]["publicKeys"][0]["keyData"] == "ssh-ed25519 AAAA k"
    assert "extended" not in doc
    extended = json.loads(ask(imds, "/metadata/instance?api-version=2021-08-01&extended=true").body)
    assert extended["extended"]["compute"]["ppsType"] == "None"
    name = ask(imds, "/metadata/instance/compute/name?api-version=2021-08-01&format=text")
    assert name.body == b"vm-1"
    assert ask(imds, "/metadata/instance/compute/nothing?api-version=2021-08-01").status == 404


def health(state="Ready", **changes) -> bytes:
    fields = {**GOAL, **changes}
    return (
        (
            '<?xml version="1.0"?><Health>'
            "<GoalStateIncarnation>{incarnation}</GoalStateIncarnation>"
            "<Container><ContainerId>{container_id}</ContainerId><RoleInstanceList><Role>"
            "<InstanceId>{instance_id}</InstanceId><Health><State>" + state + "</State></Health>"
            "</Role></RoleInstanceList></Container></Health>"
        )
        .format(**fields)
        .encode()
    )


def wire(state, method, target, body=b"", headers=None):
    return azure.wire_answer(
        state,
        Request(
            method, target, {"x-ms-version": "2012-11-30"} if headers is None else headers, body
        ),
    )


def test_wireserver_goal_state_and_ready():
    reports: list[bytes] = []
    state = azure.WireState(GOAL, reports.append)
    assert wire(state, "GET", "/machine/?comp=goalstate", headers={}).status == 400
    goal = ET.fromstring(wire(state, "GET", "/machine/?comp=goalstate").body)
    assert goal.findtext("./Incarnation") == "1"
    assert goal.findtext("./Container/ContainerId") == "c-1"
    assert goal.findtext("./Container/RoleInstanceList/RoleInstance/InstanceId") == "i-1._vm"
    assert wire(state, "POST", "/machine?comp=health", health()).status == 200
    assert azure.parse_health(reports[-1])["state"] == "Ready"


def test_wireserver_serves_what_the_linux_agent_fetches():
    state = azure.WireState(GOAL, lambda body: None, vm_name="vm-1")
    versions = ET.fromstring(wire(state, "GET", "/?comp=versions", headers={}).body)
    assert versions.findtext("./Preferred/Version") == "2012-11-30"
    goal = ET.fromstring(wire(state, "GET", "/machine/?comp=goalstate").body)
    role = goal.find("./Container/RoleInstanceList/RoleInstance/Configuration")
    urls = {name: role.findtext(name) for name in ("HostingEnvironmentConfig", "SharedConfig")}
    assert role.findtext("ConfigName")
    for name, url in urls.items():
        assert url.startswith("http://168.63.129.16/machine/c-1/i-1._vm?comp=config&type=")
        reply = wire(state, "GET", url.removeprefix("http://168.63.129.16"))
        assert reply.status == 200, name
        doc = ET.fromstring(reply.body)
        assert doc.tag == name and doc.find("./Role").get("name") == "vm-1"
    hosting_path = urls["HostingEnvironmentConfig"].removeprefix("http://168.63.129.16")
    hosting = ET.fromstring(wire(state, "GET", hosting_path).body)
    assert hosting.find("./Incarnation").get("instance") == "vm-1"
    assert hosting.find("./Deployment").get("name") == "c-1"
    other = "/machine/c-2/i-1._vm?comp=config&type=sharedConfig"
    assert wire(state, "GET", other).status == 404
    assert wire(state, "POST", "/machine?comp=telemetrydata", b"<x/>").status == 200


def test_wireserver_ignores_reports_for_another_goal_state_and_garbage():
    reports: list[bytes] = []
    state = azure.WireState(GOAL, reports.append)
    assert wire(state, "POST", "/machine?comp=health", health(container_id="other")).status == 410
    assert wire(state, "POST", "/machine?comp=health", b"<not xml").status == 400
    assert reports == []
