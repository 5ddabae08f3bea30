"""Object names as the contract defines them: relative, ``/``-separated, ASCII."""

from __future__ import annotations


def check_name(name: str) -> str:
    """Names are relative and ``/``-separated (the contract); refuse what would escape a prefix."""
    if not name or name.startswith("/") or not name.isascii():
        raise ValueError(f"invalid object name {name!r}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"invalid object name {name!r}")
    return name
