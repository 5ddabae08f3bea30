"""NoCloud seed ISOs: the ``cidata`` CD that tells cloud-init (or the test disk) who it is.

cloud-init's NoCloud datasource reads any filesystem labelled ``cidata`` holding ``meta-data``
(instance id, hostname), ``user-data`` (usually ``#cloud-config``) and optionally
``network-config``. The ISO is written in pure Python with pycdlib: Joliet and Rock Ridge names
keep the file names lowercase and hyphenated, as cloud-init looks them up.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pycdlib

from imagekit.errors import ProviderError, UsageError

VOLUME_LABEL = "cidata"  # the label NoCloud searches for
# ISO 9660 level-1 names (8.3, upper case) are required alongside the long names; readers that
# understand Rock Ridge or Joliet (Linux, cloud-init) never see them.
_FILES = {"meta-data": "METADATA.;1", "user-data": "USERDATA.;1", "network-config": "NETWORK.;1"}
# RFC 1123 host names: what cloud-init will accept and what `hostname` can set.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")  # cloud-config ssh_keys: <type>_private


def meta_data(instance_id: str, hostname: str) -> bytes:
    """The ``meta-data`` document; the values are validated, so no YAML quoting is needed."""
    if not _INSTANCE_ID.match(instance_id):
        raise UsageError(f"invalid instance id {instance_id!r}: use letters, digits, . _ : -")
    if not _HOSTNAME.match(hostname):
        raise UsageError(f"invalid hostname {hostname!r}: use letters, digits, - and dots")
    return f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n".encode()


def ssh_cloud_config(
    authorized_keys: Sequence[str],
    host_keys: Mapping[str, str] | None = None,
) -> str:
    """A ``#cloud-config`` user-data giving root these SSH keys and, optionally, host keys.

    ``host_keys`` maps a key type (``ed25519``, ``ecdsa``, ``rsa``) to an OpenSSH-format private
    key, so the client can pin the host key it generated. The block-literal style (``|``) used
    here is what the test disk's small parser reads; cloud-init reads it too.
    """
    lines = ["#cloud-config", "ssh_authorized_keys:"]
    for key in authorized_keys:
        key = key.strip()
        if not key or any(c in key for c in '\n\r"\\'):
            raise UsageError("an SSH public key must be one line without quotes or backslashes")
        lines.append(f'  - "{key}"')
    if host_keys:
        lines.append("ssh_keys:")
        for key_type, private in host_keys.items():
            if key_type not in _HOST_KEY_TYPES:
                raise UsageError(f"unknown host key type {key_type!r}: use {_HOST_KEY_TYPES}")
            lines.append(f"  {key_type}_private: |")
            lines.extend(f"    {line}" for line in private.strip().splitlines())
    return "\n".join(lines) + "\n"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def build_seed(
    path: Path,
    *,
    instance_id: str,
    hostname: str,
    user_data: str | bytes,
    network_config: str | bytes | None = None,
) -> Path:
    """Write a NoCloud seed ISO to ``path`` (via a temporary file renamed into place)."""
    files = {"meta-data": meta_data(instance_id, hostname), "user-data": _as_bytes(user_data)}
    if network_config is not None:
        files["network-config"] = _as_bytes(network_config)
    return write_iso(path, VOLUME_LABEL, files)


def write_iso(path: Path, label: str, files: Mapping[str, bytes]) -> Path:
    """An ISO 9660 image labelled ``label`` holding ``files`` (``dir/name`` paths, any depth).

    The ISO 9660 names are generated 8.3 ones (``D1``, ``F1.;1``…) that readers understanding
    Rock Ridge or Joliet — Linux, so cloud-init — never see: they read the real names.
    """
    path = Path(path)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, joliet=3, rock_ridge="1.09", vol_ident=label)
    made: dict[str, str] = {"": ""}  # directory path -> its ISO 9660 path
    for count, (name, data) in enumerate(sorted(files.items()), start=1):
        *folders, leaf = name.split("/")
        for depth in range(1, len(folders) + 1):
            folder = "/".join(folders[:depth])
            if folder not in made:
                made[folder] = f"{made['/'.join(folders[: depth - 1])]}/D{len(made)}"
                iso.add_directory(
                    made[folder], rr_name=folders[depth - 1], joliet_path=f"/{folder}"
                )
        iso_name = _FILES.get(name, f"F{count}.;1")
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"{made['/'.join(folders)]}/{iso_name}",
            rr_name=leaf,
            joliet_path=f"/{name}",
        )
    partial = ""
    try:
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
        os.replace(partial, path)
    except OSError as exc:
        raise ProviderError(f"cannot write ISO {path}: {exc}") from exc
    finally:
        iso.close()
        if partial and os.path.exists(partial):
            os.unlink(partial)
    return path


__all__ = ["VOLUME_LABEL", "build_seed", "meta_data", "ssh_cloud_config", "write_iso"]
