"""How the recorded-HTTP tests drive a cloud provider: without pauses between polls, and through
a whole boot followed by a teardown from the run record, as two CLI processes would."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from imagekit.providers.base import ImageSource, Provider, TeardownReport
from imagekit.providers.boot import BootOptions, boot, teardown
from imagekit.providers.runs import RunRecord, RunStore

P = TypeVar("P", bound=Provider)


def instant(cls: type[P]) -> Callable[..., P]:
    """``cls``'s constructor with polling that never pauses (a recorded cloud answers at once);
    it takes ``teardown``'s factory arguments too (the provider's name first)."""

    def make(_name: str = "", *, state_dir: Path, settings: Mapping[str, str] | None = None) -> P:
        provider = cls(state_dir=state_dir, settings=settings)
        provider.poll_interval = 0.0  # type: ignore[attr-defined]
        return provider

    return make


class Flow(NamedTuple):
    record: RunRecord  # the run as the boot ended it
    image: bytes  # the converted disk the provider uploaded
    report: TeardownReport


def boot_and_teardown(
    make: Callable[..., Provider],
    runs: RunStore,
    source: ImageSource,
    listener: int,
    *,
    image: str,
    size: str | None = None,
) -> Flow:
    """Boot ``source`` with one ``tcp:`` check on ``listener`` (see the fixture), keep the bytes
    of the converted disk ``image`` (its file name in the run), then tear the run down with a
    new provider made from the record alone, as a later process would."""
    options = BootOptions(
        guest_ports=(listener,),
        checks=(f"tcp:{listener}",),
        timeout=10,
        size=size,
        adapt=False,  # the test disk has no OS for the guest stage: these tests are the HTTP flows
    )
    record = boot(make(state_dir=runs.root), source, options, runs)
    disk = (runs.runs_dir / record.run_id / "image" / image).read_bytes()
    return Flow(record, disk, teardown(runs, record.run_id, factory=make))
