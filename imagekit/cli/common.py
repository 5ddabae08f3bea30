"""Options and helpers shared by several command modules (one place for how a store is opened).

The store modules are imported when a store is opened, not with this module, so that a command
that never opens one does not pay for the crypto and backend libraries.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from imagekit.store.backends.base import Backend
    from imagekit.store.repository import Repository

F = TypeVar("F", bound=Callable[..., Any])


def identity_option(f: F) -> F:
    return click.option(
        "--identity",
        "identity_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="IMAGEKIT_IDENTITY",
        help="Identity file (else the repository passphrase is used). Env: IMAGEKIT_IDENTITY.",
    )(f)


def fingerprint_option(f: F) -> F:
    return click.option(
        "--fingerprint",
        envvar="IMAGEKIT_FINGERPRINT",
        help="The repository fingerprint (ikf1…) `store init` printed: only keys matching it "
        "are used. Without it, the one recorded on first use. Env: IMAGEKIT_FINGERPRINT.",
    )(f)


def adapt_option(f: F) -> F:
    return click.option(
        "--adapt/--no-adapt",
        "adapt",
        default=None,
        help="Adapt the restored copy of each guest for the target (cloud-init datasource, "
        "MAC-pinned network, fstab, initramfs drivers…; docs/guests.md). Default: on for "
        "clouds and twins, off for local.",
    )(f)


def preload(module: str) -> threading.Thread:
    """Start importing ``module`` on a background thread; the caller imports it again later.

    For work that runs while the store opens: its key derivation (scrypt, ~0.1 s) releases the
    GIL, so a heavy import (boto3 and its API models for an export) loads in that time instead
    of after it. An import that fails here fails again, with its usual error, where the caller
    imports the module; the later import waits for this one to finish if it is still running.
    """

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"preload {module}", daemon=True)
    thread.start()
    return thread


def open_backend(url: str) -> Backend:
    from imagekit.store.backends.registry import open_backend as _open_backend

    return _open_backend(url)


@contextlib.contextmanager
def open_repository(
    url: str, identity_path: Path | None, fingerprint: str | None = None
) -> Iterator[Repository]:
    """The repository at ``url``, unlocked with the identity file or else the passphrase, its
    keys checked against ``fingerprint`` or the one this host recorded on first use."""
    from imagekit.state import state_dir
    from imagekit.store.identity import env_or_prompt, read_identity
    from imagekit.store.repository import Repository
    from imagekit.store.trust import KnownStores

    known = KnownStores(state_dir())
    with open_backend(url) as backend:
        if identity_path is not None:
            identity = read_identity(identity_path)
            yield Repository.open(backend, identity=identity, fingerprint=fingerprint, known=known)
        else:
            passphrase = env_or_prompt(f"passphrase for {backend.url}", False)
            yield Repository.open(
                backend, passphrase=passphrase, fingerprint=fingerprint, known=known
            )
