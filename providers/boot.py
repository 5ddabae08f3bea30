"""Boot and teardown of a run: the contract's stages in order, timed, undone on failure.

``boot`` records the run first, then prepare → adapt → upload → register → create → health,
each stage timed into the record. ``adapt`` is the guest stage (``providers.adapting``): on by
default for clouds and twins, off for local QEMU unless asked (``BootOptions.adapt``,
``--adapt``/``--no-adapt``). Any failure (a ``HealthError`` at the deadline, a refused call,
Ctrl-C) tears down what the run created before the error reaches the caller; a clean teardown
removes the run's folder, a partial one keeps the record for ``imagekit teardown RUN_ID``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libcloud.compute.base import NodeSize

from imagekit.errors import ImagekitError, ProviderError, UsageError
from imagekit.progress import Progress
from imagekit.providers.adapting import adapt_prepared, finish, guest_target, work_format
from imagekit.providers.base import ImageSource, NodeRequest, Provider, TeardownReport
from imagekit.providers.health import guest_ports, parse_check
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import Run, RunRecord, RunStore
from imagekit.providers.userdata import generate_keys, render_user_data

# Five minutes: a cloud VM from an imported image is usually up in one or two; a local TCG boot
# of a real distribution image takes about one.
DEFAULT_HEALTH_TIMEOUT = 300.0
DEFAULT_GUEST_PORTS = (22, 80)
STAGES = ("prepare", "adapt", "upload", "register", "create", "health")


@dataclass(frozen=True)
class BootOptions:
    count: int = 1
    size: str | None = None  # a provider size id/name or an AWS instance type
    user_data: Path | None = None  # None: templates/user-data/<role>.j2
    guest_ports: tuple[int, ...] = DEFAULT_GUEST_PORTS
    checks: tuple[str, ...] = ()  # --health specs; none: the provider's default checks
    timeout: float = DEFAULT_HEALTH_TIMEOUT  # seconds for all health checks together
    role: str | None = None  # None: the image's ``role`` metadata, else "default"
    template: str | None = None  # a packaged user-data template instead of the role's
    variables: Mapping[str, Any] = field(default_factory=dict)  # extra template variables
    #: The guest stage (--adapt/--no-adapt); None: the provider's default (on for clouds and
    #: twins, off for local QEMU, the fast bench).
    adapt: bool | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UsageError(f"--count {self.count}: boot at least one node")
        if self.timeout <= 0:
            raise UsageError(f"health timeout {self.timeout:g}: must be positive")
        if any(not 0 < p < 65536 for p in self.guest_ports):
            raise UsageError(f"--port: not TCP ports: {self.guest_ports}")
        for check in self.checks:
            parse_check(check)  # a typo fails here, before the store is opened


def boot(
    provider: Provider,
    source: ImageSource,
    options: BootOptions,
    runs: RunStore,
    *,
    progress: Progress | None = None,
    on_run: Callable[[Run], None] | None = None,
) -> RunRecord:
    """Boot ``source`` on ``provider`` and wait until healthy; the run's record.

    ``on_run`` is called once the run exists (the CLI prints its id early, so a user can tear
    down from another terminal while a long boot waits).
    """
    # Everything that can be checked without side effects is checked before the long work.
    checks = [parse_check(c) for c in options.checks or provider.default_checks]
    ports = tuple(sorted(set(options.guest_ports) | guest_ports(checks)))
    planned = source.preview(provider.disk_format)
    provider.check_image_size(planned.virtual_size, planned.boot_mode)
    run = runs.create(provider.name, image=source.describe(), settings=provider.settings)
    if on_run is not None:
        on_run(run)
    try:
        keys = generate_keys(run.ssh_dir, comment=f"imagekit-{run.run_id}")
        target = guest_target(provider) if _adapting(provider, options) else None
        with run.stage("prepare"):
            fmt = work_format(provider) if target is not None else None
            prepared = provider.prepare(source, run, progress, disk_format=fmt)
        if target is not None:
            with run.stage("adapt"):
                prepared, _ = adapt_prepared(prepared, target, run)
            with run.stage("prepare"):
                prepared = finish(prepared, provider, run, progress)
        size, why = provider.choose_size(options.size, prepared)
        role = options.role or prepared.metadata.get("role")
        user_data = render_user_data(
            keys,
            hostname=run.run_id,
            role=str(role) if role else None,
            path=options.user_data,
            template=options.template,
            variables=options.variables,
        )
        request = NodeRequest(
            count=options.count,
            size=size,
            user_data=user_data,
            guest_ports=ports,
            name_prefix=run.run_id,
            ssh_public_key=keys.public_key,
        )
        run.update(notes=(*run.record.notes, f"size {why}"))
        with run.stage("upload"):
            uploaded = provider.upload(prepared, run)
        with run.stage("register"):
            image = provider.register_image(uploaded, run)
        with run.stage("create"):
            nodes = provider.create_nodes(image, request, run)
        run.update(nodes=tuple(provider.node_info(node) for node in nodes))
        with run.stage("health"):
            results = provider.wait_healthy(nodes, checks, run, options.timeout)
        flagged = [
            f"{r.node}: {r.check} passed on weaker evidence: {r.detail}"
            for r in results
            if r.flagged
        ]
        flagged += [f"warning: {w}" for r in results for w in r.warnings]
        run.update(
            status="healthy",
            health=tuple(r.as_dict() for r in results),
            notes=(*run.record.notes, *flagged),
        )
    except BaseException as exc:
        _undo(provider, runs, run, exc)
        raise
    return run.record


def planned_boot(
    provider: Provider, image: str, options: BootOptions, run_id: str = "RUN_ID"
) -> list[str]:
    """What ``boot`` would do, step by step, without touching the store or the cloud.

    The size is named as the user gave it; without one it is chosen at boot from the sizes the
    provider lists (a cloud call), so the plan says so instead of guessing.
    """
    checks = [parse_check(c) for c in options.checks or provider.default_checks]
    ports = tuple(sorted(set(options.guest_ports) | guest_ports(checks)))
    wanted = options.size or "the size nearest the image's AWS instance type"
    request = NodeRequest(
        count=options.count,
        size=NodeSize(wanted, wanted, 0, 0, 0, 0.0, None),  # type: ignore[arg-type]
        user_data="",
        guest_ports=ports,
        name_prefix=run_id,
    )
    target = guest_target(provider) if _adapting(provider, options) else None
    adapting = [f"inspect the guest and adapt it for {target.name}"] if target else []
    return [
        f"restore {image} from the store and convert it to {provider.disk_format}",
        *adapting,
        *provider.planned_calls(request, run_id),
        f"wait healthy within {options.timeout:g} s: {', '.join(map(str, checks))}",
    ]


def _adapting(provider: Provider, options: BootOptions) -> bool:
    return provider.adapt_default if options.adapt is None else options.adapt


def _undo(provider: Provider, runs: RunStore, run: Run, exc: BaseException) -> None:
    """Tear down after a failed boot; say in the error what became of the run."""
    run.update(status="failed", error=str(exc))
    try:
        report = provider.teardown(run)
    except ImagekitError as teardown_exc:
        outcome = f"teardown failed too ({teardown_exc}): run `imagekit teardown {run.run_id}`"
    else:
        if report.failed:
            left = ", ".join(str(r) for r, _ in report.failed)
            outcome = f"teardown left {left}: run `imagekit teardown {run.run_id}` again"
        else:
            runs.remove(run)
            outcome = f"run {run.run_id} torn down"
    if isinstance(exc, ImagekitError):
        exc.message = f"{exc.message}\n({outcome})"


def teardown(
    runs: RunStore,
    run_id: str,
    *,
    factory: Callable[..., Provider] = create_provider,
) -> TeardownReport:
    """Delete everything run ``run_id`` created, then its folder; works from any process."""
    run = runs.open(run_id)
    run.update(status="tearing-down")
    provider = factory(run.record.provider, state_dir=runs.root, settings=run.record.settings)
    report = provider.teardown(run)
    if report.failed:
        details = "; ".join(f"{r}: {e}" for r, e in report.failed)
        raise ProviderError(
            f"teardown of {run_id} left {len(report.failed)} resource(s): {details}",
            hint=f"fix the cause and run `imagekit teardown {run_id}` again",
        )
    runs.remove(run)
    return report


__all__ = [
    "DEFAULT_HEALTH_TIMEOUT",
    "STAGES",
    "BootOptions",
    "boot",
    "planned_boot",
    "teardown",
]
