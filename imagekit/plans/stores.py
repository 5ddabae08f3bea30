"""Opening a plan's stores: credentials and keys resolved from the references the plan holds.

Nothing prompts: a scheduled job has no terminal, so a missing variable is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagekit.errors import UsageError
from imagekit.plans.model import StoreSpec
from imagekit.store.backends.credentials import CREDENTIALS_FILE_VAR, Credentials, resolve
from imagekit.store.backends.registry import SCHEMES, open_backend, parse_store_url
from imagekit.store.identity import read_identity
from imagekit.store.repository import Repository
from imagekit.store.trust import KnownStores


def _env(name: str, why: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{why}: environment variable {name} is not set")
    return value


def store_credentials(spec: StoreSpec) -> Credentials | None:
    """The store's credentials from its file and/or named variables; None: the standard chain."""
    parsed = parse_store_url(spec.url)
    if parsed.scheme == "file":
        return None
    refs = spec.credentials
    if refs.file is None and not refs.env:
        return None  # the standard chain of docs/stores.md
    environ = dict(os.environ)
    if refs.file is not None:
        environ[CREDENTIALS_FILE_VAR] = str(refs.file)
    family = SCHEMES[parsed.scheme].family
    base = resolve(family, parsed.url.split("?", 1)[0], parsed.container, environ)
    named = {f: _env(var, f"store {spec.name} credentials.{f}") for f, var in refs.env.items()}
    return Credentials(
        key=named.get("key", base.key),
        secret=named.get("secret", base.secret),
        token=named.get("token", base.token),
        extra=base.extra,
    )


@contextmanager
def open_store(spec: StoreSpec, state: Path | None = None) -> Iterator[Repository]:
    """The store's repository, unlocked with its identity file or its passphrase variable; its
    keys must match the plan's ``fingerprint`` or else the one recorded in ``state`` (default:
    the state directory) on first use."""
    from imagekit.state import state_dir

    known = KnownStores(state or state_dir())
    with open_backend(spec.url, store_credentials(spec)) as backend:
        key = spec.key
        pin = spec.fingerprint
        if key.identity is not None:
            passphrase = _env(key.passphrase_env, f"identity {key.identity}")
            identity = read_identity(key.identity, lambda prompt, confirm: passphrase)
            yield Repository.open(backend, identity=identity, fingerprint=pin, known=known)
        else:
            secret = _env(key.passphrase_env, f"store {spec.name} passphrase")
            yield Repository.open(backend, passphrase=secret, fingerprint=pin, known=known)


__all__ = ["open_store", "store_credentials"]
