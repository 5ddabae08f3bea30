"""The gcp provider: Google Compute Engine through libcloud's GCE driver (Compute API v1).

upload: the ``gce`` tar.gz → ``gs://BUCKET/imagekit/RUN/disk.tar.gz``
register_image: ``images.insert`` from that object, polled until READY (our deadline)
create_nodes: one firewall rule for the health ports (instances tagged with the run), then one
instance per node: a boot disk from the image of the type, interface and NIC the family and the
guest's drivers allow (``families.attachment``), user-data in the metadata
teardown: instances, firewall rule, image, object — newest first

GCE names are the resources' ids, so each is recorded *before* the call that creates it: a crash
during the call still leaves a record naming it, and deleting what was never made is "gone".
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.google import GoogleBaseError, ResourceNotFoundError
from libcloud.compute.base import Node, NodeImage, NodeSize
from libcloud.compute.drivers.gce import GCENodeDriver

from imagekit.errors import ProviderError, UsageError
from imagekit.guest.profile import GuestProfile
from imagekit.providers import health
from imagekit.providers.base import (
    NodeInfo,
    NodeRequest,
    PreparedImage,
    Provider,
    Resource,
    Setting,
    UploadedImage,
)
from imagekit.providers.cloud.common import (
    endpoints,
    node_target,
    public_ip,
    read_secret,
    resource_name,
)
from imagekit.providers.gcp import api, bodies, families
from imagekit.providers.limits import GiB, SizeLimit
from imagekit.providers.runs import Run
from imagekit.providers.sizes import choose_fitting

#: An import of a few-GiB disk takes 5-15 minutes; one hour covers a large root volume.
IMAGE_TIMEOUT = 3600.0
#: libcloud's deadline for each operation it waits on (instance and firewall inserts, deletes);
#: its 180 s default is too short for an instance with a large boot disk.
OPERATION_TIMEOUT = 900.0
KEY_FILE = "GOOGLE_APPLICATION_CREDENTIALS"


class GcpProvider(Provider):
    name = "gcp"
    description = "Google Compute Engine: image imported from Cloud Storage, pd-balanced disk"
    disk_format = "gce"
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting("project", "project id the image and instances go to", env="GCP_PROJECT"),
        Setting("zone", "zone of the instances, e.g. europe-west1-b", env="GCP_ZONE"),
        Setting("bucket", "Cloud Storage bucket for the image upload", env="GCP_BUCKET"),
        Setting("network", "VPC network (default: default)", env="GCP_NETWORK", required=False),
        Setting(
            "credentials",
            "service-account JSON key file (or [gcp] in $IMAGEKIT_CREDENTIALS_FILE)",
            env=KEY_FILE,
            required=False,
            secret=True,
        ),
    )
    ssh_user = "imagekit"
    poll_interval = api.POLL_INTERVAL
    size_limits: ClassVar[tuple[SizeLimit, ...]] = (
        SizeLimit(
            65536 * GiB,
            "a pd-balanced or hyperdisk-balanced boot disk",
            "Compute API diskTypes: validDiskSize 10GB-65536GB",
        ),
    )

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        self.project = self.settings["project"]
        self.zone = self.settings["zone"]
        self.bucket = self.settings["bucket"]
        self.network = self.settings.get("network", "default")
        self._compute: Any = None
        self._storage: Any = None
        self._guest_ports: tuple[int, ...] = (22, 80)
        self._guest: GuestProfile | None = None  # the prepared image's, once known

    # -- connections (built on first use; nothing is contacted by a dry run) ----------------

    def _identity(self) -> tuple[str, str]:
        key_file = str(read_secret(self.name, KEY_FILE))
        try:
            email = json.loads(Path(key_file).read_text())["client_email"]
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"{KEY_FILE}: not a readable service-account JSON key file") from exc
        return str(email), key_file

    def _token_cache(self) -> str:
        # libcloud caches the OAuth2 token in a file; keep it in imagekit's private state folder.
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(self.state_dir / f"gcp-token.{self.project}")

    def compute(self) -> Any:
        if self._compute is None:
            email, key_file = self._identity()
            self._compute = api.call(
                "authentication",
                lambda: GCENodeDriver(  # type: ignore[no-untyped-call]
                    email,
                    key_file,
                    project=self.project,
                    auth_type="SA",
                    credential_file=self._token_cache(),
                    timeout=OPERATION_TIMEOUT,
                ),
            )
        return self._compute

    def storage(self) -> Any:
        if self._storage is None:
            email, key_file = self._identity()
            self._storage = api.call(
                "authentication",
                lambda: api.ServiceAccountStorageDriver(
                    email, key_file, project=self.project, credential_file=self._token_cache()
                ),
            )
        return self._storage

    # -- stages ----------------------------------------------------------------------------

    def object_name(self, run: Run) -> str:
        return f"imagekit/{run.run_id}/disk.tar.gz"

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        name = self.object_name(run)
        run.add_resource(
            Resource("gcs-object", f"gs://{self.bucket}/{name}", name, {"bucket": self.bucket})
        )
        url = api.objects_insert(self.storage(), self.bucket, name, image.path)
        return UploadedImage(image, url)

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        name = resource_name(run.run_id, "image")
        run.add_resource(Resource("image", name, name))
        driver = self.compute()
        prepared = image.prepared
        self._guest = prepared.guest
        features = bodies.guest_os_features(prepared.boot_mode, prepared.guest)
        request = bodies.image_body(name, image.location, f"imagekit {prepared.name}", features)
        deadline = time.monotonic() + IMAGE_TIMEOUT
        operation = api.images_insert(driver, request)
        api.wait_operation(driver, operation, "images.insert", deadline, self.poll_interval)
        body = api.wait_image_ready(driver, name, deadline, self.poll_interval)
        return NodeImage(
            body.get("id", name), name, driver, extra={"selfLink": body.get("selfLink", "")}
        )

    def choose_size(self, wanted: str | None, image: PreparedImage) -> tuple[NodeSize, str]:
        """A size named as asked; else the nearest usable one (``families.py``), general
        purpose first on a tie."""
        self._guest = image.guest
        return choose_fitting(
            self.list_sizes(),
            wanted,
            image.instance_type,
            usable=lambda sizes: families.usable(sizes, image.architecture, image.guest),
            # A family the guest cannot boot on, asked by name: refused now, not by GCE later.
            check=lambda size: families.attachment(size, image.guest),
            none_usable=lambda: ProviderError(
                f"gcp: zone {self.zone} lists no machine type for an {image.architecture} image "
                "booting from pd-balanced with virtio-net",
                hint="choose a zone with E2/N2/N1 (x86-64) or T2A (arm64) machine types",
            ),
            prefer=families.rank,
        )

    def list_sizes(self) -> list[NodeSize]:
        driver = self.compute()
        return list(api.call("size listing", lambda: driver.list_sizes(location=self.zone)))

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        driver = self.compute()
        self._guest_ports = request.guest_ports
        tag = resource_name(run.run_id, "nodes")
        firewall = resource_name(run.run_id, "allow")
        run.add_resource(Resource("firewall", firewall, firewall))
        api.firewalls_insert(driver, firewall, request.guest_ports, tag, self.network)
        metadata = {"user-data": request.user_data}
        if request.ssh_public_key:
            metadata["ssh-keys"] = f"{self.ssh_user}:{request.ssh_public_key}"
        attach = families.attachment(request.size, self._guest)
        machine_type = str((request.size.extra or {}).get("selfLink") or request.size.name)
        nodes = []
        for base in request.node_names():
            name = resource_name(base)
            run.add_resource(Resource("node", name, name, {"zone": self.zone}))
            body = bodies.instance_body(
                project=self.project,
                zone=self.zone,
                name=name,
                machine_type=machine_type,
                image_link=str((image.extra or {}).get("selfLink") or image.name),
                network=self.network,
                tag=tag,
                metadata=metadata,
                attach=attach,
            )
            deadline = time.monotonic() + OPERATION_TIMEOUT
            nodes.append(
                api.instances_insert(driver, body, self.zone, deadline, self.poll_interval)
            )
        return nodes

    def node_info(self, node: Node) -> NodeInfo:
        reached = endpoints(public_ip(node), self._guest_ports)
        return NodeInfo(node.name, node.name, reached, str(getattr(node.size, "id", "") or ""))

    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        host = public_ip(node)
        if not host:
            raise ProviderError(f"instance {node.name} has no external IP to check")
        return node_target(
            node,
            host,
            self.ssh_user,
            run,
            console=lambda: api.serial_port_output(self.compute(), node.name, self.zone),
        )

    # -- teardown --------------------------------------------------------------------------

    def _path(self, resource: Resource) -> str:
        kinds = {
            "node": f"/zones/{resource.extra.get('zone', self.zone)}/instances/{resource.id}",
            "image": f"/global/images/{resource.id}",
            "firewall": f"/global/firewalls/{resource.id}",
        }
        if resource.kind not in kinds:
            raise ProviderError(f"gcp cannot delete a {resource.kind!r}")
        return kinds[resource.kind]

    def delete(self, resource: Resource) -> bool:
        if resource.kind == "gcs-object":
            return api.objects_delete(self.storage(), resource.extra["bucket"], resource.name)
        return api.delete(self.compute(), str(resource), self._path(resource))

    def exists(self, resource: Resource) -> bool:
        try:
            if resource.kind == "gcs-object":
                storage = self.storage()
                path = f"/{resource.extra['bucket']}/{resource.name}"
                return int(storage.connection.request(path, method="HEAD").status) == 200
            self.compute().connection.request(self._path(resource))
        except (ResourceNotFoundError, GoogleBaseError, BaseHTTPError) as exc:
            if getattr(exc, "http_code", getattr(exc, "code", 0)) == 404:
                return False
            raise ProviderError(f"GCE lookup of {resource} failed: {exc}") from exc
        return True

    # -- dry run ---------------------------------------------------------------------------

    def planned_calls(self, request: NodeRequest, run_id: str) -> list[str]:
        """The cloud calls a boot would make, in order, without making any."""
        base = f"compute/v1/projects/{self.project}"
        calls = [
            f"PUT https://{api.GCS_HOST}/{self.bucket}/imagekit/{run_id}/disk.tar.gz",
            f"POST {base}/global/images (rawDisk.source = that object)",
            f"GET {base}/global/operations/OPERATION until DONE (errors quoted)",
            f"GET {base}/global/images/{resource_name(run_id, 'image')} until READY",
            f"POST {base}/global/firewalls {resource_name(run_id, 'allow')} "
            f"tcp:{','.join(map(str, request.guest_ports))}",
        ]
        for base_name in request.node_names():
            calls.append(
                f"POST {base}/zones/{self.zone}/instances {resource_name(base_name)} "
                f"({request.size.id}, {families.PD_BALANCED}, metadata user-data)"
            )
        return calls
