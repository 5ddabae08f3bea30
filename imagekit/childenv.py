"""The environment a child process (qemu-img, tar) gets: the parent's, without secrets.

A command holding the repository passphrase or store credentials in its environment passes
them to every child it starts, where ``/proc/<pid>/environ`` shows them to the same user and
to root for as long as the child runs, and where a child that crashes may write them into a
core dump. qemu-img and tar need none of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Credential fields never to pass on: the secrets, and the key id, which names the account
#: (``Credentials.secrets``); regions, projects and URLs stay.
_SECRET_FIELDS = ("key", "secret", "token", "service_account_file")
#: Variables holding secrets outside the store credential table.
_OTHER_SECRETS = (
    "IMAGEKIT_PASSPHRASE",
    "IMAGEKIT_NEW_PASSPHRASE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_CLIENT_SECRET",
)


def secret_names() -> frozenset[str]:
    from imagekit.store.backends.credentials import ENV

    names = set(_OTHER_SECRETS)
    for fields in ENV.values():
        for name in _SECRET_FIELDS:
            names.update(fields.get(name, ()))
    return frozenset(names)


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if environ is None else environ
    hidden = secret_names()
    return {k: v for k, v in source.items() if k not in hidden}


__all__ = ["child_environment", "secret_names"]
