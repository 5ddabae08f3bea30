"""What Azure gives a Linux guest: the provisioning ISO, IMDS and the wireserver. Pure.

Read from Debian 12's cloud-init 22.4 (``DataSourceAzure``, ``helpers/azure.py``) and Azure's
documentation; the same protocol serves the Linux agent (waagent):

- Provisioning: a generalized image gets a CD holding ``ovf-env.xml`` (namespace
  ``http://schemas.microsoft.com/windowsazure``): ``ProvisioningSection`` /
  ``LinuxProvisioningConfigurationSet`` with ``UserName``, ``HostName`` (both required),
  ``SSH/PublicKeys/PublicKey`` (``Path``, ``Value``), ``CustomData`` (base64), and a
  ``PlatformSettingsSection``. Until the guest reports Ready the VM stays "Creating"; Azure ends
  it as ``OSProvisioningTimedOut``. A specialized image gets no CD and is not waited for.
- IMDS at http://169.254.169.254/metadata/instance?api-version=…: refuses a request without
  ``Metadata: true``, without ``api-version`` or with ``X-Forwarded-For`` (400).
  ``compute.publicKeys`` present means no certificate exchange with the wireserver.
- Wireserver at 168.63.129.16: ``GET /?comp=versions`` (the protocol versions, asked without
  a version header); ``GET /machine/?comp=goalstate`` (``x-ms-version`` required) answers the
  goal state (incarnation, container id, role instance id, and the URLs of the hosting
  environment and shared configuration the Linux agent fetches next); ``POST
  /machine?comp=health`` takes the guest's health report, ``Ready`` ending provisioning —
  counted only when it names the current incarnation, container and instance; the agent's
  ``telemetrydata`` and ``roleProperties`` posts are taken.
"""

from __future__ import annotations

import base64
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from imagekit.providers.twins.answers import Reply, Request
from imagekit.providers.twins.clouds import ADDR_WIRESERVER, Cloud
from imagekit.providers.twins.node import NodeFacts, Presentation

HEALTH_FILE = "azure-health.xml"  # the last accepted health report, in the node folder
MEDIA_LABEL = "rd_rdfe_imagekit"  # Azure labels its CD rd_rdfe_*; Joliet allows 16 characters
ADMIN_USER = "imagekit"  # Azure refuses "root" as the admin user name
WIRE_VERSION = "2012-11-30"
# The host GA plugin beside the wireserver; its vmSettings (FastTrack) is optional, and a 404
# is how a host without it answers: the agent then uses the wireserver's documents only.
HOST_PLUGIN_PORT = 32526
# Azure gives a generalized Linux VM 20 minutes to report Ready before OSProvisioningTimedOut.
PROVISIONING_TIMEOUT = 1200.0
_WA = "http://schemas.microsoft.com/windowsazure"


@dataclass
class WireState:
    goal_state: dict[str, str]  # incarnation, container_id, instance_id
    on_health: Callable[[bytes], None]
    vm_name: str = "vm"


def ovf_env(*, hostname: str, public_key: str | None, custom_data: str) -> bytes:
    key = ""
    if public_key:
        key = (
            "<wa:SSH><wa:PublicKeys><wa:PublicKey>"
            f"<wa:Fingerprint></wa:Fingerprint>"
            f"<wa:Path>/home/{ADMIN_USER}/.ssh/authorized_keys</wa:Path>"
            f"<wa:Value>{escape(public_key)}</wa:Value>"
            "</wa:PublicKey></wa:PublicKeys></wa:SSH>"
        )
    encoded = base64.b64encode(custom_data.encode()).decode()
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" '
        f'xmlns:wa="{_WA}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<wa:ProvisioningSection><wa:Version>1.0</wa:Version>"
        "<wa:LinuxProvisioningConfigurationSet>"
        "<wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>"
        f"<wa:UserName>{ADMIN_USER}</wa:UserName>"
        "<wa:DisableSshPasswordAuthentication>true</wa:DisableSshPasswordAuthentication>"
        f"<wa:HostName>{escape(hostname)}</wa:HostName>{key}"
        f"<wa:CustomData>{encoded}</wa:CustomData>"
        "</wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection>"
        "<wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings>"
        "<wa:KmsServerHostname>kms.core.windows.net</wa:KmsServerHostname>"
        "<wa:ProvisionGuestAgent>false</wa:ProvisionGuestAgent>"
        '<wa:GuestAgentPackageName xsi:nil="true" />'
        "<wa:PreprovisionedVm>false</wa:PreprovisionedVm>"
        "</wa:PlatformSettings></wa:PlatformSettingsSection></Environment>\n"
    ).encode()


def imds_document(
    cloud: Cloud, *, name: str, vm_id: str, mac: str, vm_size: str, public_key: str | None
) -> dict[str, Any]:
    net = cloud.network
    keys = (
        [{"keyData": public_key, "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys"}]
        if public_key
        else []
    )
    return {
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": "westeurope",
            "name": name,
            "osProfile": {
                "adminUsername": ADMIN_USER,
                "computerName": name,
                "disablePasswordAuthentication": "true",
            },
            "osType": "Linux",
            "provider": "Microsoft.Compute",
            "publicKeys": keys,
            "resourceGroupName": "imagekit-twin",
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "tags": "",
            "userData": "",
            "vmId": vm_id,
            "vmSize": vm_size,
            "zone": "",
        },
        "network": {
            "interface": [
                {
                    "ipv4": {
                        "ipAddress": [{"privateIpAddress": str(net.guest), "publicIpAddress": ""}],
                        "subnet": [
                            {
                                "address": str(net.gateway.network.network_address),
                                "prefix": str(net.gateway.network.prefixlen),
                            }
                        ],
                    },
                    "ipv6": {"ipAddress": []},
                    "macAddress": mac.replace(":", "").upper(),
                }
            ]
        },
        "extended": {"compute": {"ppsType": "None"}},
    }


def _error(status: int, message: str) -> Reply:
    return Reply.json({"error": message}, status)


def imds_answer(doc: dict[str, Any], request: Request) -> Reply:
    if request.header("x-forwarded-for") is not None:
        return _error(400, "Bad request. X-Forwarded-For header is not allowed")
    if (request.header("metadata") or "").lower() != "true":
        return _error(400, "Bad request. Required metadata header not specified")
    path = request.path.rstrip("/")
    if not path.startswith("/metadata/instance"):
        return _error(404, "Not found")
    if "api-version" not in request.query:
        return _error(400, "Bad request. api-version was not specified in the request")
    if request.method != "GET":
        return _error(405, "Method not allowed")
    parts = [p for p in path.removeprefix("/metadata/instance").split("/") if p]
    node: Any = (
        doc
        if parts or request.query.get("extended") == "true"
        else {k: v for k, v in doc.items() if k != "extended"}
    )
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _error(404, "Not found")
    if request.query.get("format") == "text" and not isinstance(node, dict | list):
        return Reply(200, str(node).encode())
    return Reply.json(node)


def _config_url(goal: Mapping[str, str], kind: str) -> str:
    return (
        f"http://{ADDR_WIRESERVER}/machine/{goal['container_id']}/{goal['instance_id']}"
        f"?comp=config&amp;type={kind}&amp;incarnation={goal['incarnation']}"
    )


def goal_state_xml(goal: Mapping[str, str]) -> bytes:
    """The goal state, with the two documents the Linux agent fetches before it reports (no
    certificates: keys come by value; no extensions: an empty extensions goal state)."""
    config = (
        f"<Configuration><HostingEnvironmentConfig>{_config_url(goal, 'hostingEnvironmentConfig')}"
        f"</HostingEnvironmentConfig><SharedConfig>{_config_url(goal, 'sharedConfig')}"
        f"</SharedConfig><ConfigName>{goal['instance_id']}.0.{goal['instance_id']}.1.xml"
        "</ConfigName></Configuration>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Version>{WIRE_VERSION}</Version><Incarnation>{goal['incarnation']}</Incarnation>"
        "<Machine><ExpectedState>Started</ExpectedState>"
        "<ExpectHealthReport>FALSE</ExpectHealthReport></Machine>"
        f"<Container><ContainerId>{goal['container_id']}</ContainerId><RoleInstanceList>"
        f"<RoleInstance><InstanceId>{goal['instance_id']}</InstanceId><State>Started</State>"
        f"{config}</RoleInstance></RoleInstanceList></Container>"
        "</GoalState>\n"
    ).encode()


def parse_health(body: bytes) -> dict[str, str]:
    """A health report's fields: incarnation, container_id, instance_id, state, substatus,
    description (empty when absent); ``ValueError`` when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc

    def text(path: str) -> str:
        found = root.find(path)
        return (found.text or "").strip() if found is not None else ""

    role = "./Container/RoleInstanceList/Role"
    report = {
        "incarnation": text("./GoalStateIncarnation"),
        "container_id": text("./Container/ContainerId"),
        "instance_id": text(f"{role}/InstanceId"),
        "state": text(f"{role}/Health/State"),
        "substatus": text(f"{role}/Health/Details/SubStatus"),
        "description": text(f"{role}/Health/Details/Description"),
    }
    if root.tag != "Health" or not report["state"]:
        raise ValueError("not a health report")
    return report


def versions_xml() -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<Versions><Preferred>'
        f"<Version>{WIRE_VERSION}</Version></Preferred><Supported><Version>{WIRE_VERSION}"
        "</Version><Version>2012-09-15</Version></Supported></Versions>\n"
    ).encode()


def hosting_environment_xml(goal: Mapping[str, str], vm_name: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<HostingEnvironmentConfig version="1.0.0.0" '
        'goalStateIncarnation="1"><StoredCertificates /><Deployment name="'
        f'{goal["container_id"]}" guid="{{{goal["container_id"]}}}" incarnation="0">'
        '<Service name="imagekit-twin" guid="{00000000-0000-0000-0000-000000000000}" />'
        f'<ServiceInstance name="{goal["container_id"]}.0" /></Deployment>'
        f'<Incarnation number="1" instance="{vm_name}" guid="{{{goal["instance_id"]}}}" />'
        f'<Role guid="{{{goal["instance_id"]}}}" name="{vm_name}" hostingEnvironmentVersion="1" '
        'software="" softwareType="ApplicationPackage" entryPoint="" parameters="" '
        'settleTimeSeconds="10" />'
        '<HostingEnvironmentSettings name="full" Runtime="rd_fabric_stable" />'
        "</HostingEnvironmentConfig>\n"
    ).encode()


def shared_config_xml(goal: Mapping[str, str], vm_name: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<SharedConfig version="1.0.0.0" '
        f'goalStateIncarnation="1"><Deployment name="{goal["container_id"]}" '
        'incarnation="0"><Service name="imagekit-twin" /><ServiceInstance '
        f'name="{goal["container_id"]}.0" /></Deployment><Incarnation number="1" '
        f'instance="{vm_name}" /><Role guid="{{{goal["instance_id"]}}}" name="{vm_name}" '
        'settleTimeSeconds="10" /><Instances><Instance id="'
        f'{vm_name}" address="10.0.0.4" /></Instances></SharedConfig>\n'
    ).encode()


def host_plugin_answer(request: Request) -> Reply:
    """The host GA plugin of a host without FastTrack: every document is absent (404)."""
    return Reply(404, b"Not found\n")


def wire_answer(state: WireState, request: Request) -> Reply:
    comp = request.query.get("comp")
    path = request.path.rstrip("/")
    xml = "text/xml; charset=utf-8"
    # The agent asks for the protocol versions first, before it knows which to name.
    if path == "" and comp == "versions" and request.method == "GET":
        return Reply(200, versions_xml(), (), xml)
    if request.header("x-ms-version") is None:
        return Reply(400, b"x-ms-version header required\n")
    goal = state.goal_state
    config_path = f"/machine/{goal['container_id']}/{goal['instance_id']}"
    if path == config_path and comp == "config" and request.method == "GET":
        kind = request.query.get("type")
        if kind == "hostingEnvironmentConfig":
            return Reply(200, hosting_environment_xml(goal, state.vm_name), (), xml)
        if kind == "sharedConfig":
            return Reply(200, shared_config_xml(goal, state.vm_name), (), xml)
        return Reply(404, b"Not found\n")
    if path != "/machine":
        return Reply(404, b"Not found\n")
    if comp == "goalstate" and request.method == "GET":
        return Reply(200, goal_state_xml(goal), (), xml)
    if comp in ("telemetrydata", "roleProperties") and request.method == "POST":
        return Reply(200, b"")  # the agent's events and host key thumbprint: taken, unused
    if comp == "health" and request.method == "POST":
        try:
            report = parse_health(request.body)
        except ValueError as exc:
            return Reply(400, f"bad health report: {exc}\n".encode())
        current = {k: state.goal_state[k] for k in ("incarnation", "container_id", "instance_id")}
        if {k: report[k] for k in current} != current:
            return Reply(410, b"health report for another goal state\n")
        state.on_health(request.body)
        return Reply(200, b"")
    return Reply(404, b"Not found\n")


def presentation(cloud: Cloud, node: NodeFacts, settings: Mapping[str, str]) -> Presentation:
    container = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"container:{node.uuid}"))
    goal = {
        "incarnation": "1",
        "container_id": container,
        "instance_id": f"{node.uuid}._{node.name}",
    }
    service = {
        "kind": "azure",
        "vm_name": node.name,
        "goal_state": goal,
        "imds": imds_document(
            cloud,
            name=node.name,
            vm_id=node.uuid,
            mac=node.mac,
            vm_size=node.machine_type,
            public_key=node.public_key,
        ),
    }
    if settings.get("os_state", "generalized") == "specialized":
        return Presentation(service)
    ovf = ovf_env(hostname=node.name, public_key=node.public_key, custom_data=node.user_data)
    return Presentation(service, {"ovf-env.xml": ovf}, MEDIA_LABEL)


__all__ = [
    "HEALTH_FILE",
    "WireState",
    "goal_state_xml",
    "imds_answer",
    "imds_document",
    "ovf_env",
    "parse_health",
    "presentation",
    "wire_answer",
]
