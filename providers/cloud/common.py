"""What the cloud providers (gcp, azure, openstack/rackspace) share: secrets, names, the wait
on long operations, and how health checks reach a node.

Settings (region, project, resource group…) are resolved by ``Provider.__init__`` and recorded in
the run. Secrets come from their environment variable, else from
the credentials file named by ``IMAGEKIT_CREDENTIALS_FILE`` (section named after the provider,
keys named like the variables, any case); they are never recorded, logged or put in argv.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from libcloud.compute.base import Node

from imagekit.errors import ProviderError, UsageError
from imagekit.providers import health
from imagekit.providers.base import Endpoint
from imagekit.providers.userdata import load_keys
from imagekit.store.backends.credentials import CREDENTIALS_FILE_VAR, load_file

if TYPE_CHECKING:
    from imagekit.providers.runs import Run

T = TypeVar("T")

#: Cloud resource names: lower-case letters, digits and dashes, starting with a letter. This is
#: the intersection of what GCE (RFC 1035, ≤ 63), Azure and OpenStack accept.
_NAME = re.compile(r"[^a-z0-9-]+")
NAME_LIMIT = 63


def read_secret(
    provider: str, name: str, environ: Mapping[str, str] | None = None, required: bool = True
) -> str | None:
    """A secret from the environment, else from the credentials file's ``[provider]`` section."""
    env = os.environ if environ is None else environ
    if env.get(name):
        return env[name]
    path = env.get(CREDENTIALS_FILE_VAR)
    if path:
        section = load_file(Path(path)).get(provider) or {}
        for key, value in section.items():
            if key.lower() == name.lower() and value:
                return str(value)
    if required:
        raise UsageError(
            f"provider {provider}: {name} is not set",
            hint=f"export {name}, or put it in the [{provider}] section of ${CREDENTIALS_FILE_VAR}",
        )
    return None


def resource_name(run_id: str, *parts: str) -> str:
    """A cloud resource name for this run: ``<run id>-<parts>``, cleaned and bounded (a run id
    starts with the provider's name, so with a letter, as GCE and Azure want)."""
    name = _NAME.sub("-", "-".join((run_id, *parts)).lower()).strip("-")
    return name[:NAME_LIMIT].rstrip("-")


def _never_failed(_: object) -> ProviderError | None:
    return None


def poll(
    fetch: Callable[[], T],
    *,
    done: Callable[[T], bool],
    late: Callable[[T], ProviderError],
    deadline: float,
    interval: float,
    failed: Callable[[T], ProviderError | None] = _never_failed,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Look at a long operation with ``fetch`` every ``interval`` seconds until ``done``; the last
    look's value.

    ``failed`` returns the cloud's own error when it gave up (image rejected, operation failed);
    ``late`` makes the error raised when the next look would fall after ``deadline`` (a
    ``time.monotonic()`` value), so a wait never sleeps past its deadline.
    """
    while True:
        value = fetch()
        if done(value):
            return value
        error = failed(value)
        if error is not None:
            raise error
        if time.monotonic() + interval > deadline:
            raise late(value)
        sleep(interval)


def public_ip(node: Node) -> str:
    """The node's first public address; "" while it has none."""
    return next(iter(node.public_ips or []), "")


def endpoints(host: str, guest_ports: Sequence[int]) -> tuple[Endpoint, ...]:
    """A cloud node answers on the guest ports themselves, at its own address (the run's
    firewall rule opens them); none while it has no address."""
    return tuple(Endpoint(port, host, port) for port in guest_ports) if host else ()


def _no_console() -> str | None:
    return None


def node_target(
    node: Node,
    host: str,
    ssh_user: str,
    run: Run,
    console: Callable[[], str | None] = _no_console,
) -> health.HealthTarget:
    """How the checks reach a cloud node at ``host``: its guest ports directly, and ``ssh:`` as
    ``ssh_user`` with the run's key when the run made one, the host key trusted on first use
    (and reported)."""
    keys = load_keys(run.ssh_dir) if run.ssh_dir.is_dir() else None
    ssh = health.SshAccess(ssh_user, keys.private_key, None) if keys else None
    return health.HealthTarget(
        name=node.name, endpoint=lambda port: (host, port), console=console, ssh=ssh
    )
