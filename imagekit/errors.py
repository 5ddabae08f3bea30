"""The one error tree of imagekit.

Every failure a user can meet is an ``ImagekitError`` subclass carrying a message they can act on
and an exit code. Only the CLI turns these into a line on stderr and a process exit status; library
code raises them, translating lower libraries' exceptions at the boundary with ``raise … from exc``.

    ImagekitError                      exit 1 unless stated
    ├── UsageError                     exit 2: bad arguments, config or input the user can fix
    │   └── InputError                 exit 2: an input file is missing, unreadable or malformed
    ├── ExportError                    AWS side: AMI resolution, EBS direct API reads
    ├── StoreError                     the off-AWS repository
    │   ├── IntegrityError             an object failed authentication or its checksum
    │   ├── ObjectNotFound             an object the repository needs is not in the backend
    │   ├── WrongKey                   wrong passphrase or identity (exit 2)
    │   └── LockError                  another process holds a conflicting lock
    ├── ConvertError                   qemu-img failed or its output broke the target's rules
    ├── GuestError                     a guest could not be inspected or adapted, or it
    │                                  cannot come up on the target (blockers found)
    ├── ProviderError                  a target cloud / local QEMU refused or failed
    │   └── HealthError                a node did not become healthy by its deadline
    └── PlanError                      a plan file is invalid (exit 2) or a job failed

``transient`` marks errors worth retrying (throttling, 5xx, connection resets); the single retry
wrapper looks only at this flag, so nothing else needs to know which errors are which.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit statuses, documented in the README."""

    OK = 0
    FAILED = 1  # the operation was attempted and failed
    USAGE = 2  # usage, configuration or input error: fix the command line or the file
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class ImagekitError(Exception):
    """Base of every error imagekit reports to a user."""

    exit_code: ExitCode = ExitCode.FAILED
    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(ImagekitError):
    exit_code = ExitCode.USAGE


class InputError(UsageError):
    """An input the user named is missing, unreadable or not what it claims to be."""


class ExportError(ImagekitError):
    pass


class StoreError(ImagekitError):
    pass


class IntegrityError(StoreError):
    pass


class ObjectNotFound(StoreError):
    pass


class WrongKey(StoreError):
    exit_code = ExitCode.USAGE


class LockError(StoreError):
    transient = True


class ConvertError(ImagekitError):
    pass


class GuestError(ImagekitError):
    pass


class ProviderError(ImagekitError):
    pass


class HealthError(ProviderError):
    pass


class PlanError(ImagekitError):
    pass


class PlanInvalid(PlanError):
    exit_code = ExitCode.USAGE


__all__ = [
    "ConvertError",
    "ExitCode",
    "ExportError",
    "GuestError",
    "HealthError",
    "ImagekitError",
    "InputError",
    "IntegrityError",
    "LockError",
    "ObjectNotFound",
    "PlanError",
    "PlanInvalid",
    "ProviderError",
    "StoreError",
    "UsageError",
    "WrongKey",
]
