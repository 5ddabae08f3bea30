"""One twin node's facts and what its twin hands it: plain values shared by the clouds' modules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeFacts:
    name: str
    uuid: str
    number: int  # numeric instance id
    mac: str
    user_data: str
    public_key: str | None
    machine_type: str
    ssh_user: str = "root"


@dataclass(frozen=True)
class Presentation:
    service: Mapping[str, Any]  # for services.build
    media: Mapping[str, bytes] | None = None  # files of an ISO attached as a CD
    media_label: str | None = None


__all__ = ["NodeFacts", "Presentation"]
