"""Provider test fixtures: the cases the contract suite runs against, and a tiny disk.

A later provider joins the contract suite by adding a ``ProviderCase`` to ``CASES`` (with its
recorded-HTTP or emulator setup in ``setup``); every test in ``test_contract.py`` then runs on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagekit.providers.base import Provider
from imagekit.providers.registry import create_provider


@dataclass(frozen=True)
class ProviderCase:
    name: str
    settings: Mapping[str, str] = field(default_factory=dict)
    passing_checks: tuple[str, ...] = ()  # checks its nodes pass
    failing_checks: tuple[str, ...] = ()  # checks its nodes never pass
    # Settings that make one stage fail (None: the provider cannot be told to fail).
    failing_settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    setup: Callable[[], AbstractContextManager[object]] = nullcontext

    def provider(self, state_dir: Path, **settings: str) -> Provider:
        return create_provider(
            self.name, state_dir=state_dir, settings={**self.settings, **settings}
        )


CASES = {
    "null": ProviderCase(
        "null",
        settings={"console": "booting\nREADY hostname=x\n"},
        passing_checks=("serial:READY",),
        failing_checks=("serial:NEVER-PRINTED",),
        failing_settings={
            stage: {"fail_at": stage}
            for stage in ("upload", "register_image", "create_nodes", "delete")
        },
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[ProviderCase]:
    chosen = CASES[request.param]
    with chosen.setup():
        yield chosen


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 1 MiB raw disk of zeros: enough for every stage that does not boot it."""
    disk = tmp_path / "small.raw"
    disk.write_bytes(bytes(1 << 20))
    return disk
