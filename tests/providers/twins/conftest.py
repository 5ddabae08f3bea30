"""Twin fixtures: root (namespaces, taps) and the real Debian guests `make test` builds."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from imagekit.errors import ImagekitError
from imagekit.providers.boot import BootOptions, boot, teardown
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import RunStore

ROOT = Path(__file__).resolve().parents[3]
DEBIAN = ROOT / "build" / "debian"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("twins need root: each node gets a network namespace and a tap device")


@pytest.fixture
def root() -> None:
    needs_root()


def debian_disk(variant: str) -> Path:
    """``build/debian/<variant>.raw`` (``make debian-images``; ``make test`` builds it)."""
    needs_root()
    disk = DEBIAN / f"{variant}.raw"
    if not disk.is_file():
        pytest.fail(f"{disk} is missing: run `make debian-images` (make test does it for you)")
    return disk


def imagekit_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("imagekit-")}


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a run id, a node folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


HEALTH_TIMEOUT = 300.0  # a real guest under TCG: healthy in ~100-170 s, failing in 85-260 s


@dataclass
class Outcome:
    seconds: float
    healthy: bool
    error: str = ""
    notes: tuple[str, ...] = ()
    run_id: str = ""
    state: Path = Path()
    guest: Mapping[str, Any] = field(default_factory=dict)  # the run record's guest stage
    stages: Mapping[str, float] = field(default_factory=dict)


def boot_outcome(
    provider_name: str,
    settings: Mapping[str, str],
    source: Any,
    state: Path,
    *,
    adapt: bool = False,
    checks: tuple[str, ...] = (),
) -> Outcome:
    """One boot through ``providers.boot`` (default check ``ssh:true``, a 1 GiB node), torn down
    from its record as a later ``imagekit teardown`` would when it came up. Unadapted unless
    ``adapt``: such boots show what each cloud does to the image as it is."""
    provider = create_provider(provider_name, state_dir=state, settings=dict(settings))
    options = BootOptions(size="local-1g", timeout=HEALTH_TIMEOUT, adapt=adapt, checks=checks)
    runs = RunStore(state)
    started = time.monotonic()
    run_ids: list[str] = []
    try:
        record = boot(provider, source, options, runs, on_run=lambda r: run_ids.append(r.run_id))
    except ImagekitError as exc:
        return Outcome(time.monotonic() - started, False, str(exc), run_id=run_ids[0], state=state)
    seconds = time.monotonic() - started
    teardown(runs, record.run_id)
    return Outcome(
        seconds,
        True,
        notes=record.notes,
        run_id=record.run_id,
        state=state,
        guest=record.guest,
        stages=record.stages,
    )


def assert_nothing_left(outcome: Outcome) -> None:
    left = [ns for ns in imagekit_namespaces() if ns.startswith(f"imagekit-{outcome.run_id}-")]
    assert left == [], "a twin left its network namespace behind"
    assert not list(outcome.state.glob("twins/*/nodes/*")), "a node folder was left"
    assert not list(outcome.state.glob("local/nodes/*")), "a node folder was left"
    assert not list((outcome.state / "runs").glob("*")), "a run record was left"
    assert processes_mentioning(str(outcome.state)) == [], "a process of the run still runs"


C = TypeVar("C")


def boot_cases(
    cases: Mapping[str, C],
    run: Callable[[C, Path], Outcome],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome]:
    """Every case's outcome, booted two at a time (one per core: TCG is CPU-bound), each in a
    state folder of its own; printed for the log (``-s``), errors included."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run, case, tmp_path_factory.mktemp(name))
            for name, case in cases.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    for name, outcome in results.items():
        state = "healthy" if outcome.healthy else "failed"
        print(
            f"{name}: {state} in {outcome.seconds:.0f} s"
            + (f"\n{outcome.error}" if outcome.error else "")
        )
    return results
