"""The changes adaptation makes to a guest, and what a report says of them: pure values.

Three kinds, all applied by the agent inside the guest's own filesystem: write a file (the
original, if any, kept under ``/var/lib/imagekit/orig/<path>`` the first time, where no
configuration glob of the guest can pick it up), remove a path, and run one of the guest's own
tools (``update-initramfs``, ``dracut``, ``update-grub``) in the guest's root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Where the agent keeps originals of the files it rewrites (see agent.py).
ORIGINALS = "/var/lib/imagekit/orig"


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: str
    why: str
    mode: int = 0o644
    backup: bool = False  # keep the original (a rewrite of the guest's own file)

    def wire(self) -> dict[str, Any]:
        return {
            "op": "write",
            "path": self.path,
            "content": self.content,
            "mode": self.mode,
            "backup": self.backup,
        }

    def describe(self) -> str:
        verb = "rewrite" if self.backup else "write"
        return f"{verb} {self.path}: {self.why}"


@dataclass(frozen=True)
class RemovePath:
    path: str
    why: str

    def wire(self) -> dict[str, Any]:
        return {"op": "remove", "path": self.path}

    def describe(self) -> str:
        return f"remove {self.path}: {self.why}"


@dataclass(frozen=True)
class RunCommand:
    argv: tuple[str, ...]
    why: str

    def wire(self) -> dict[str, Any]:
        return {"op": "command", "argv": list(self.argv)}

    def describe(self) -> str:
        return f"run {' '.join(self.argv)}: {self.why}"


Edit = WriteFile | RemovePath | RunCommand

__all__ = ["ORIGINALS", "Edit", "RemovePath", "RunCommand", "WriteFile"]
