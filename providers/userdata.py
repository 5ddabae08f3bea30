"""What a run offers its nodes: an SSH key pair, a host key to pin, and cloud-init user-data.

Stored images are the customer's own: they may not run cloud-init or accept injected keys. The
keys and user-data are offered; the health checks decide whether the node took them.

User-data comes from ``templates/user-data/<role>.j2`` (``default.j2`` when the role has none),
or from the user's file: a ``*.j2`` file is rendered with the same variables, any other file is
passed through unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from imagekit.errors import InputError, UsageError

TEMPLATE_PACKAGE = "imagekit.templates"
TEMPLATE_FOLDER = "user-data"
DEFAULT_ROLE = "default"
_ROLE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class RunKeys:
    """The run's login key (client side) and the host key offered to its nodes."""

    private_key: Path  # OpenSSH private key, 0600
    public_key: str  # "ssh-ed25519 AAAA… imagekit-<run>"
    host_private: str  # OpenSSH private key text, offered through user-data
    host_public: str  # "ssh-ed25519 AAAA…", what the SSH check pins


def _ed25519() -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def generate_keys(folder: Path, comment: str) -> RunKeys:
    """A fresh ed25519 login key and host key, written 0600 into ``folder`` (0700)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    user_private, user_public = _ed25519()
    host_private, host_public = _ed25519()
    _write_private(folder / "id_ed25519", user_private)
    _write_private(folder / "host_ed25519", host_private)
    (folder / "id_ed25519.pub").write_text(f"{user_public} {comment}\n")
    (folder / "host_ed25519.pub").write_text(f"{host_public}\n")
    return RunKeys(folder / "id_ed25519", f"{user_public} {comment}", host_private, host_public)


def load_keys(folder: Path) -> RunKeys:
    try:
        return RunKeys(
            folder / "id_ed25519",
            (folder / "id_ed25519.pub").read_text().strip(),
            (folder / "host_ed25519").read_text(),
            (folder / "host_ed25519.pub").read_text().strip(),
        )
    except OSError as exc:
        raise InputError(f"{folder}: run keys missing ({exc.strerror})") from exc


def _environment() -> jinja2.Environment:
    folder = resources.files(TEMPLATE_PACKAGE) / TEMPLATE_FOLDER
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not an empty line
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML
    )


def _variables(
    keys: RunKeys, hostname: str, role: str, extra: Mapping[str, Any]
) -> dict[str, object]:
    # The plan's variables first: the run's own (keys, hostname) always win.
    return {
        **extra,
        "hostname": hostname,
        "role": role,
        "ssh_authorized_keys": [keys.public_key],
        "host_keys": {"ed25519": keys.host_private},
    }


def render_user_data(
    keys: RunKeys,
    *,
    hostname: str,
    role: str | None = None,
    path: Path | None = None,
    template: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> str:
    """User-data for the nodes of a run (see the module docstring for where it comes from).

    ``template`` names a packaged template instead of the role's; ``variables`` are extra
    template variables (a plan's), never replacing the run's own.
    """
    role = role or DEFAULT_ROLE
    if not _ROLE.match(role):
        raise UsageError(f"invalid role {role!r}: lower-case letters, digits, - and _")
    env = _environment()
    try:
        if path is not None:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: cannot read user-data ({exc})") from exc
            if path.suffix != ".j2":
                return text
            compiled = env.from_string(text)
        else:
            names = env.list_templates()
            if template is not None and template not in names:
                raise UsageError(f"no packaged user-data template {template!r}")
            name = f"{role}.j2" if f"{role}.j2" in names else f"{DEFAULT_ROLE}.j2"
            compiled = env.get_template(template or name)
        return compiled.render(_variables(keys, hostname, role, variables or {}))
    except jinja2.TemplateError as exc:
        where = path or f"{TEMPLATE_FOLDER}/{template or role + '.j2'}"
        raise InputError(f"{where}: user-data template error: {exc}") from exc


__all__ = ["RunKeys", "generate_keys", "load_keys", "render_user_data"]
