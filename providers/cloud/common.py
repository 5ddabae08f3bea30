"""What the cloud providers (gcp, azure, openstack/rackspace) share: settings and secrets.

Settings (region, project, resource group…) are resolved by ``Provider.__init__`` and recorded in
the run. Secrets come from their environment variable, else from
the credentials file named by ``IMAGEKIT_CREDENTIALS_FILE`` (section named after the provider,
keys named like the variables, any case); they are never recorded, logged or put in argv.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from imagekit.errors import UsageError
from imagekit.store.backends.credentials import CREDENTIALS_FILE_VAR, load_file

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
