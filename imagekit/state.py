"""Where imagekit keeps local state: run records, export journals, job status and locks.

``$IMAGEKIT_STATE_DIR`` when set, else ``$XDG_STATE_HOME/imagekit``, else
``~/.local/state/imagekit`` (the XDG base-directory default).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_ENV = "IMAGEKIT_STATE_DIR"


def state_dir() -> Path:
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "imagekit"


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` whole (temporary name beside it, fsync, rename), readable by
    the owner only: identity files, and the records of which stores and keys this host trusts."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
