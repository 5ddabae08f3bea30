"""Store credentials: from a credentials file or the environment, never from the store URL.

Each family needs at most a key (an identity: access key id, account name, user name), a secret
(secret key, account key, password) and an optional token (a session token), plus a few
non-secret extras (tenant, project). Where they come from, first match wins:

1. ``credentials=`` passed to ``open_backend`` by the caller;
2. the credentials file named by ``IMAGEKIT_CREDENTIALS_FILE`` (TOML if it ends in ``.toml``,
   INI otherwise): the section named exactly like the store URL without its query
   (``s3://bucket/prefix``), else ``SCHEME://CONTAINER``, else the family name (``s3``,
   ``azure``, ``gs``, ``swift``);
3. the environment variables in ``ENV`` below, in order (``IMAGEKIT_*`` before the standard names
   the cloud's own tools read).

Values are never logged: ``Credentials.__repr__`` hides them, and ``secrets()`` gives the strings
the error translation scrubs from every message.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagekit.errors import UsageError

CREDENTIALS_FILE_VAR = "IMAGEKIT_CREDENTIALS_FILE"


@dataclass(frozen=True, repr=False)
class Credentials:
    """What a driver needs to sign requests. ``extra`` holds non-secret settings (tenant…)."""

    key: str | None = None
    secret: str | None = None
    token: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a message (the key id too: it names the account)."""
        return tuple(v for v in (self.key, self.secret, self.token) if v)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}=<set>" for name in ("key", "secret", "token") if getattr(self, name)
        )
        return f"Credentials({shown})"


#: Environment variables per family: credential field → candidates, first set one wins.
ENV: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "key": ("IMAGEKIT_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        "secret": ("IMAGEKIT_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        "token": ("IMAGEKIT_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
    },
    "azure": {
        "key": ("IMAGEKIT_AZURE_ACCOUNT", "AZURE_STORAGE_ACCOUNT"),
        "secret": ("IMAGEKIT_AZURE_KEY", "AZURE_STORAGE_KEY"),
    },
    "gs": {
        # HMAC interoperability keys; without them a service-account JSON file is used.
        "key": ("IMAGEKIT_GCS_ACCESS_KEY_ID",),
        "secret": ("IMAGEKIT_GCS_SECRET",),
        "service_account_file": (
            "IMAGEKIT_GCS_SERVICE_ACCOUNT_FILE",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
        "project": ("IMAGEKIT_GCS_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    },
    "swift": {
        "key": ("OS_USERNAME",),
        "secret": ("OS_PASSWORD", "OS_API_KEY"),
        "auth_url": ("OS_AUTH_URL",),
        "tenant": ("OS_PROJECT_NAME", "OS_TENANT_NAME"),
        "domain": ("OS_USER_DOMAIN_NAME",),
        "region": ("OS_REGION_NAME",),
    },
}

#: Names a credentials-file section may use for each field, per family (friendlier than key/secret).
FILE_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "key": ("access_key_id", "key"),
        "secret": ("secret_access_key", "secret"),
        "token": ("session_token", "token"),
    },
    "azure": {"key": ("account", "key"), "secret": ("account_key", "secret")},
    "gs": {
        "key": ("access_key_id", "key"),
        "secret": ("secret", "secret_access_key"),
        "service_account_file": ("service_account_file",),
        "project": ("project",),
    },
    "swift": {
        "key": ("username", "key"),
        "secret": ("password", "api_key", "secret"),
        "auth_url": ("auth_url",),
        "tenant": ("tenant", "project"),
        "domain": ("domain",),
        "region": ("region",),
    },
}

_SECRET_FIELDS = ("key", "secret", "token")


def resolve(
    family: str,
    url: str,
    container: str,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Credentials for one store: from the credentials file if it has a section, else the env."""
    env = os.environ if environ is None else environ
    path = env.get(CREDENTIALS_FILE_VAR)
    if path:
        section = _file_section(Path(path), family, url, container)
        if section is not None:
            return _from_mapping(family, section, f"{path} [{url}]")
    values: dict[str, str] = {}
    for name, candidates in ENV[family].items():
        value = next((env[var] for var in candidates if env.get(var)), None)
        if value is not None:
            values[name] = value
    return _build(values)


def _file_section(path: Path, family: str, url: str, container: str) -> Mapping[str, object] | None:
    sections = load_file(path)
    scheme = url.split("://", 1)[0]
    for name in (url.rstrip("/"), f"{scheme}://{container}", family):
        if name in sections:
            return sections[name]
    return None


def load_file(path: Path) -> dict[str, Mapping[str, object]]:
    """Every section of a TOML or INI credentials file, by name."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read credentials file ({exc.strerror})") from exc
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML ({exc})") from exc
        return {k: v for k, v in data.items() if isinstance(v, dict)}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise UsageError(f"{path}: not a valid INI file ({type(exc).__name__})") from exc
    return {name: dict(parser[name]) for name in parser.sections()}


def _from_mapping(family: str, section: Mapping[str, object], where: str) -> Credentials:
    aliases = FILE_ALIASES[family]
    known = {alias for names in aliases.values() for alias in names}
    unknown = sorted(set(section) - known)
    if unknown:
        # Name the keys, never the values: a typo'd key may hold a secret.
        raise UsageError(
            f"{where}: unknown credential field(s) {', '.join(unknown)}",
            hint=f"{family} accepts {', '.join(sorted(known))}",
        )
    values: dict[str, str] = {}
    for name, names in aliases.items():
        for alias in names:
            if alias in section:
                values[name] = str(section[alias])
                break
    return _build(values)


def _build(values: dict[str, str]) -> Credentials:
    extra = {k: v for k, v in values.items() if k not in _SECRET_FIELDS}
    return Credentials(
        key=values.get("key"), secret=values.get("secret"), token=values.get("token"), extra=extra
    )
