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
