"""Failover: boot a plan's whole stack on one target from the off-AWS stores only.

Nothing here talks to AWS: images come from the plan's stores (the primary, else the first
replica that answers and holds an image for every role), providers boot them.

Roles boot in the plan's dependency waves; each role is gated on its health checks before the
next wave starts, so a database is healthy before the web tier that needs it boots. Roles of one
wave boot one after another: the stores' restore already uses the host's cores and a cloud's
API quota is shared, so running them at once would mostly contend.

Every step is journaled in ``<state dir>/plans/<plan>/failover/<target>.json`` before the next
begins (the run id of a boot as soon as it exists), so a failover interrupted anywhere —
Ctrl-C, a killed process, a failed health check — continues when run again: healthy roles
whose nodes still exist are kept, a role caught half-way is torn down and booted afresh, and no
role is ever booted twice. ``teardown_stack`` ends a failover (or a rehearsal) on purpose.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagekit.errors import ImagekitError, PlanError, UsageError
from imagekit.plans.choose import Choice, choose_images
from imagekit.plans.model import Plan, StackRole, StoreSpec, TargetSpec
from imagekit.plans.records import PlanPaths, RunLock, VerifiedRecord, read_json, write_json
from imagekit.plans.stores import open_store
from imagekit.progress import Progress
from imagekit.providers.base import Provider
from imagekit.providers.boot import BootOptions, boot, planned_boot, teardown
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import Run, RunRecord, RunStore
from imagekit.providers.sources import StoredImageSource
from imagekit.state import state_dir as default_state_dir
from imagekit.store.backends.credentials import CREDENTIALS_FILE_VAR
from imagekit.store.manifest import format_time
from imagekit.store.repository import Repository
from imagekit.store.trust import SeenImages
from imagekit.timing import Stopwatch, split_restore

JOURNAL_VERSION = 1
FAILOVER_FOLDER = "failover"
#: The stages of a role's recovery, in order, as the rehearsal report names them. The boot's own
#: stages map onto them: prepare → fetch + decrypt + convert, register → import,
#: create → boot, health → healthy.
STAGES = ("fetch", "decrypt", "convert", "adapt", "upload", "import", "boot", "healthy")

Say = Callable[[str], None]
ProviderFactory = Callable[..., Provider]


# -- the journal ---------------------------------------------------------------------------------


class Journal:
    """The on-disk state of one failover or rehearsal: rewritten atomically on every change."""

    def __init__(self, path: Path, doc: dict[str, Any]):
        self.path = path
        self.doc = doc

    @staticmethod
    def load(path: Path) -> Journal | None:
        doc = read_json(path)
        if not isinstance(doc, dict):
            return None
        if doc.get("version") != JOURNAL_VERSION:
            raise PlanError(f"{path}: unknown journal version {doc.get('version')!r}")
        return Journal(path, doc)

    @staticmethod
    def new(path: Path, plan: Plan, target: str, kind: str) -> Journal:
        doc = {
            "version": JOURNAL_VERSION,
            "kind": kind,
            "plan": plan.name,
            "target": target,
            "started": format_time(datetime.now(UTC)),
            "finished": None,
            "store": None,
            "roles": {},
        }
        journal = Journal(path, doc)
        journal.save()
        return journal

    def save(self) -> None:
        write_json(self.path, self.doc)

    def role(self, role: str) -> dict[str, Any]:
        roles: dict[str, dict[str, Any]] = self.doc["roles"]
        return roles.setdefault(role, {"role": role, "status": "pending"})

    def set_role(self, role: str, **changes: Any) -> None:
        self.role(role).update(changes)
        self.save()

    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.doc["roles"].values() if r.get("run_id")]


def journal_path(plan: Plan, state_dir: Path, target: str) -> Path:
    return PlanPaths.of(plan, state_dir).folder / FAILOVER_FOLDER / f"{target}.json"


# -- stores --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedStore:
    spec: StoreSpec
    repo: Repository
    choices: dict[str, Choice]
    fallbacks: tuple[str, ...]  # why earlier stores were passed over


def open_first_store(
    plan: Plan,
    target: str,
    stack: ExitStack,
    verified: VerifiedRecord,
    *,
    at: datetime | None = None,
    pinned: dict[str, str] | None = None,
    state: Path | None = None,
) -> OpenedStore:
    """The store to boot from: of those that open and hold an image for every role, the one
    whose chosen images are newest (verified ones first), the primary on a tie.

    Every store is opened, not just the first that serves: a rolled-back or withholding primary
    would otherwise win with old images. A store this host saw holding newer images of the
    target's lineages than it now serves (``imagekit.store.trust``) is used only when no other
    store can serve, and said so. ``pinned`` (a resumed failover) prefers the store that holds
    the images chosen before.
    """
    passed: list[str] = []
    seen = SeenImages(state or default_state_dir())
    lineages = {
        plan.image_name(spec.image or role) for role, spec in plan.targets[target].stack.items()
    }
    served: list[
        tuple[tuple[Any, ...], StoreSpec, Repository, dict[str, Choice], ExitStack, str]
    ] = []
    for order, spec in enumerate(plan.stores.all()):
        inner = ExitStack()
        try:
            repo = inner.enter_context(open_store(spec, state))
            images = repo.list_images()
            rolled = seen.check(repo.url, images, lineages)
            choices = choose_images(
                plan, target, images, verified, repo.config.id.hex(), at=at, pinned=pinned
            )
        except ImagekitError as exc:
            inner.close()
            passed.append(f"store {spec.name}: {exc.message.splitlines()[0]}")
            continue
        held = {i.id for i in images}
        rank = (
            not rolled,
            all(image_id in held for image_id in (pinned or {}).values()),
            all(c.verified for c in choices.values()),
            min(c.point_in_time for c in choices.values()),
            sum(c.point_in_time.timestamp() for c in choices.values()),
            -order,
        )
        note = f"store {spec.name}: {rolled[0]}" if rolled else ""
        served.append((rank, spec, repo, choices, inner, note))
    if not served:
        raise PlanError(
            "no store can serve the failover: " + "; ".join(passed),
            hint="check the stores' credentials and reachability (imagekit status --plan …)",
        )
    best = max(served, key=lambda s: s[0])
    chosen_rank, spec, repo, choices, inner, note = best
    for rank, other, _repo, other_choices, other_inner, other_note in served:
        if other is spec:
            continue
        other_inner.close()
        if rank[-1] > chosen_rank[-1]:  # before the chosen one in the plan's order: say why
            passed.append(other_note or _why_not(other.name, other_choices, spec.name, choices))
    if note:
        passed.append(f"{note} (used: no other store can serve)")
    stack.callback(inner.close)
    return OpenedStore(spec, repo, choices, tuple(passed))


def _why_not(name: str, theirs: dict[str, Choice], chosen: str, ours: dict[str, Choice]) -> str:
    older = [
        f"{role}: {c.image.id[:12]} of {format_time(c.point_in_time)} against "
        f"{ours[role].image.id[:12]} of {format_time(ours[role].point_in_time)}"
        for role, c in theirs.items()
        if role in ours and c.point_in_time < ours[role].point_in_time
    ]
    if older:
        return f"store {name}: older images than store {chosen} ({'; '.join(older)})"
    return f"store {name}: its images are no newer, or less verified, than store {chosen}'s"


# -- providers -----------------------------------------------------------------------------------


def target_provider(
    plan: Plan, target: str, state_dir: Path, factory: ProviderFactory = create_provider
) -> Provider:
    """The target's provider, after checking the credentials the plan says it needs."""
    spec: TargetSpec = plan.targets[target]
    missing = [name for name in spec.credentials.env if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"target {target} needs {', '.join(missing)} set in the environment",
            hint="the plan's targets.<name>.credentials.env lists them",
        )
    if spec.credentials.file is not None:
        # Providers read secrets from the one credentials file variable; point it at the plan's.
        os.environ[CREDENTIALS_FILE_VAR] = str(spec.credentials.file)
    settings = {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in spec.settings.items()
    }
    provider: Provider = factory(spec.provider, state_dir=state_dir, settings=settings)
    return provider


def boot_options(
    plan: Plan, role: str, spec: StackRole, plan_dir: Path | None, adapt: bool | None = None
) -> BootOptions:
    source = spec.image or role
    template = spec.user_data.template
    user_data = None
    if spec.user_data.is_path:
        user_data = (plan_dir or Path.cwd()) / template
    return BootOptions(
        count=spec.count,
        size=spec.size or plan.sources[source].instance_type,
        user_data=user_data,
        guest_ports=tuple(spec.ports),
        checks=tuple(spec.health),
        timeout=spec.health_timeout,
        role=role,
        template=None if spec.user_data.is_path else template,
        variables=dict(spec.user_data.variables),
        adapt=adapt,
    )


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class StackOutcome:
    """What a failover or rehearsal did: per role, and the whole stack's figures."""

    plan: str
    target: str
    kind: str
    store: str
    fallbacks: tuple[str, ...]
    started: float  # time.time() at the start
    finished: float
    roles: list[dict[str, Any]]
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.error is None and all(r.get("status") == "healthy" for r in self.roles)

    def rpo_seconds(self) -> float | None:
        """The data a failover at ``started`` gives up: the oldest chosen image's age."""
        ages = [float(r["rpo_seconds"]) for r in self.roles if r.get("rpo_seconds") is not None]
        return max(ages) if ages else None

    def stage_totals(self) -> list[dict[str, Any]]:
        totals = dict.fromkeys(STAGES, 0.0)
        for role in self.roles:
            for name, seconds in (role.get("stages") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(seconds)
        return [{"name": n, "seconds": round(s, 3)} for n, s in totals.items()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "target": self.target,
            "kind": self.kind,
            "healthy": self.healthy,
            "store": self.store,
            "fallbacks": list(self.fallbacks),
            "started": format_time(datetime.fromtimestamp(self.started, UTC)),
            "rto_seconds": round(self.finished - self.started, 3),
            "rpo_seconds": _round(self.rpo_seconds()),
            "stages": self.stage_totals(),
            "roles": self.roles,
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def role_stages(run_stages: Mapping[str, float], clock: Stopwatch) -> dict[str, float]:
    """A boot's stages in the report's names; restore time split by ``imagekit.timing``."""
    split = split_restore(clock)
    prepare = float(run_stages.get("prepare", 0.0))
    # The provider's own preparation (a seed image, a tar) beyond restore and convert is
    # counted as converting: it is the "make it bootable there" part of the stage.
    split["convert"] += max(0.0, prepare - sum(split.values()))
    stages = {
        **split,
        "adapt": run_stages.get("adapt", 0.0),
        "upload": run_stages.get("upload", 0.0),
        "import": run_stages.get("register", 0.0),
        "boot": run_stages.get("create", 0.0),
        "healthy": run_stages.get("health", 0.0),
    }
    return {k: round(float(v), 3) for k, v in stages.items()}


def _still_up(runs: RunStore, provider: Provider, run_id: str) -> bool:
    """Whether a role booted earlier is still healthy and every resource it made exists."""
    try:
        run = runs.open(run_id)
    except UsageError:
        return False
    if run.record.status != "healthy":
        return False
    try:
        return all(provider.exists(r) for r in run.record.resources)
    except ImagekitError:
        return False


def _discard(runs: RunStore, run_id: str, say: Say) -> None:
    """Tear down a run caught half-way (its boot was interrupted) before booting afresh."""
    try:
        teardown(runs, run_id)
    except UsageError:
        return  # already gone
    say(f"tore down interrupted run {run_id}")


def _left_over(runs: RunStore, run_id: str | None) -> str | None:
    """``run_id`` if its run still has a record (its teardown did not finish), else None."""
    if not run_id:
        return None
    try:
        runs.open(run_id)
    except UsageError:
        return None
    return run_id


def _endpoints(run_nodes: Any) -> list[dict[str, Any]]:
    return [
        {"node": node.name, **endpoint.as_dict()}
        for node in run_nodes
        for endpoint in node.endpoints
    ]


@contextmanager
def _stack_lock(plan: Plan, state_dir: Path, target: str, kind: str) -> Iterator[None]:
    folder = PlanPaths.of(plan, state_dir).folder / FAILOVER_FOLDER
    with RunLock(folder / f"{target}.{kind}.lock", f"{kind} of plan {plan.name} to {target}"):
        yield


def run_stack(
    plan: Plan,
    target: str,
    journal: Journal,
    *,
    state_dir: Path,
    plan_dir: Path | None = None,
    at: datetime | None = None,
    progress: Progress | None = None,
    say: Say = lambda _: None,
    factory: ProviderFactory = create_provider,
) -> StackOutcome:
    """Boot every role of ``target`` in dependency waves, journaling each step.

    A role that fails stops the waves after it (its dependents would fail too); roles already
    healthy stay up. The outcome carries the error; the caller decides what it means.
    """
    started = time.time()
    if target not in plan.targets:
        raise UsageError(
            f"plan {plan.name} has no target {target!r}",
            hint=f"targets: {', '.join(plan.targets) or 'none'}",
        )
    waves = plan.boot_order(target)
    runs = RunStore(state_dir)
    provider = target_provider(plan, target, state_dir, factory)
    verified = VerifiedRecord.load(PlanPaths.of(plan, state_dir).verified)
    pinned = {r: s["image_id"] for r, s in journal.doc["roles"].items() if s.get("image_id")}
    outcome = StackOutcome(plan.name, target, journal.doc["kind"], "", (), started, started, [])
    with ExitStack() as stack:
        opened = open_first_store(
            plan, target, stack, verified, at=at, pinned=pinned, state=state_dir
        )
        selected = time.time() - started  # opening and listing the store: part of fetching
        outcome.store, outcome.fallbacks = opened.spec.name, opened.fallbacks
        for line in opened.fallbacks:
            say(f"passed over {line}")
        journal.doc["store"] = opened.spec.name
        for role, choice in opened.choices.items():
            journal.role(role).update(choice.as_dict(), store=opened.spec.name)
        journal.save()
        try:
            for wave in waves:
                for role in wave:
                    _boot_role(
                        plan, target, role, opened, journal, runs, provider,
                        plan_dir=plan_dir, progress=progress, say=say,
                        extra_fetch=selected,
                    )  # fmt: skip
                    selected = 0.0
        except ImagekitError as exc:
            outcome.error = str(exc).splitlines()[0]
        finally:
            outcome.finished = time.time()
            outcome.roles = [_role_row(journal.role(r), started) for w in waves for r in w]
    return outcome


def _role_row(state: Mapping[str, Any], started: float) -> dict[str, Any]:
    """A role's journal entry as reports show it: with ``healthy`` and its own RPO."""
    row = dict(state)
    row["healthy"] = state.get("status") == "healthy"
    frozen = state.get("point_in_time")
    if frozen:
        when = datetime.fromisoformat(str(frozen).replace("Z", "+00:00")).timestamp()
        row["rpo_seconds"] = round(max(0.0, started - when), 3)
    return row


def _boot_role(
    plan: Plan,
    target: str,
    role: str,
    opened: OpenedStore,
    journal: Journal,
    runs: RunStore,
    provider: Provider,
    *,
    plan_dir: Path | None,
    progress: Progress | None,
    say: Say,
    extra_fetch: float,
) -> None:
    state = journal.role(role)
    if state.get("run_id") and state.get("status") == "healthy":
        if _still_up(runs, provider, state["run_id"]):
            say(f"{role}: already healthy (run {state['run_id']}), kept")
            return
        say(f"{role}: run {state['run_id']} is gone or unhealthy; booting it again")
    if state.get("run_id"):
        _discard(runs, state["run_id"], say)
        journal.set_role(role, run_id=None, status="pending")
    spec = plan.targets[target].stack[role]
    choice = opened.choices[role]
    clock = Stopwatch()
    source = StoredImageSource(opened.repo, choice.image, clock)
    options = boot_options(plan, role, spec, plan_dir, plan.targets[target].adapt)
    say(f"{role}: booting image {choice.image.id[:12]} ({choice.image_name}) on {provider.name}")
    journal.set_role(role, status="booting")
    started: list[Run] = []

    def on_run(run: Run) -> None:
        started.append(run)
        journal.set_role(role, run_id=run.run_id)

    try:
        record = boot(provider, source, options, runs, progress=progress, on_run=on_run)
    except ImagekitError as exc:
        # ``boot`` tore its run down; a run whose teardown failed keeps its record and id.
        left = _left_over(runs, journal.role(role).get("run_id"))
        journal.set_role(
            role,
            status="failed",
            run_id=left,
            error=str(exc).splitlines()[0],
            # How far it got, and how long each stage took: a report shows where it stalled.
            stages=role_stages(started[0].record.stages, clock) if started else {},
            adapted=_adapted(started[0].record) if started else [],
        )
        raise PlanError(
            f"role {role} did not come up on {target}: {exc}",
            hint="fix the cause and run the same command again: healthy roles are kept",
        ) from exc
    except BaseException:
        # Interrupted: ``boot`` tore its run down (or left its record to finish the job).
        journal.set_role(role, status="pending", run_id=_left_over(runs, state.get("run_id")))
        raise
    stages = role_stages(record.stages, clock)
    stages["fetch"] = round(stages["fetch"] + extra_fetch, 3)
    journal.set_role(
        role,
        status="healthy",
        run_id=record.run_id,
        endpoints=_endpoints(record.nodes),
        stages=stages,
        notes=list(record.notes),
        adapted=_adapted(record),
        error=None,
    )


def _adapted(record: RunRecord) -> list[str]:
    """The guest stage's changes to the role's working copy, as the report lists them."""
    return [str(a.get("change")) for a in record.guest.get("applied") or ()]


def failover(
    plan: Plan,
    target: str,
    *,
    state_dir: Path,
    plan_dir: Path | None = None,
    at: datetime | None = None,
    progress: Progress | None = None,
    say: Say = lambda _: None,
    factory: ProviderFactory = create_provider,
) -> StackOutcome:
    """The emergency: boot the stack on ``target`` and keep it running (resumable)."""
    path = journal_path(plan, state_dir, target)
    with _stack_lock(plan, state_dir, target, "failover"):
        journal = Journal.load(path)
        if journal is not None and journal.doc.get("kind") != "failover":
            raise PlanError(f"{path}: not a failover journal")
        if journal is None:
            journal = Journal.new(path, plan, target, "failover")
        else:
            say(f"continuing the failover started {journal.doc['started']} ({path})")
        outcome = run_stack(
            plan, target, journal, state_dir=state_dir, plan_dir=plan_dir, at=at,
            progress=progress, say=say, factory=factory,
        )  # fmt: skip
        if outcome.healthy:
            journal.doc["finished"] = format_time(datetime.now(UTC))
            journal.save()
        return outcome


def teardown_stack(
    plan: Plan, target: str, *, state_dir: Path, say: Say = lambda _: None
) -> list[str]:
    """End a failover on purpose: tear down every run its journal names, then the journal."""
    path = journal_path(plan, state_dir, target)
    with _stack_lock(plan, state_dir, target, "failover"):
        journal = Journal.load(path)
        if journal is None:
            raise UsageError(f"no failover of plan {plan.name} to {target} is recorded")
        runs = RunStore(state_dir)
        done = []
        for run_id in journal.run_ids():
            with contextlib.suppress(UsageError):  # UsageError: no such run, already gone
                teardown(runs, run_id)
            done.append(run_id)
            say(f"tore down {run_id}")
        path.unlink()
        return done


def planned_failover(
    plan: Plan,
    target: str,
    *,
    state_dir: Path,
    plan_dir: Path | None = None,
    at: datetime | None = None,
) -> list[str]:
    """Every action ``failover`` would take, without booting, uploading or writing anything.

    The stores are opened and listed (read-only) so the plan names the images it would boot.
    """
    if target not in plan.targets:
        raise UsageError(f"plan {plan.name} has no target {target!r}")
    provider = target_provider(plan, target, state_dir)
    verified = VerifiedRecord.load(PlanPaths.of(plan, state_dir).verified)
    journal = Journal.load(journal_path(plan, state_dir, target))
    actions = []
    with ExitStack() as stack:
        opened = open_first_store(plan, target, stack, verified, at=at, state=state_dir)
        actions += [f"pass over {line}" for line in opened.fallbacks]
        actions.append(f"read images from store {opened.spec.name} ({opened.spec.url})")
        for number, wave in enumerate(plan.boot_order(target), 1):
            for role in wave:
                state = journal.role(role) if journal else {}
                if state.get("status") == "healthy":
                    actions.append(f"wave {number}, {role}: keep run {state['run_id']} if still up")
                    continue
                choice = opened.choices[role]
                spec = plan.targets[target].stack[role]
                options = boot_options(plan, role, spec, plan_dir, plan.targets[target].adapt)
                verified_note = choice.verified or "not verified by run-export"
                actions.append(
                    f"wave {number}, {role}: image {choice.image.id[:12]} ({choice.image_name}, "
                    f"frozen {format_time(choice.point_in_time)}, {verified_note})"
                )
                calls = planned_boot(provider, choice.image.id[:12], options, f"{role}-RUN")
                actions += [f"  {call}" for call in calls]
    return actions


__all__ = [
    "STAGES",
    "Journal",
    "StackOutcome",
    "failover",
    "journal_path",
    "open_first_store",
    "planned_failover",
    "role_stages",
    "run_stack",
    "target_provider",
    "teardown_stack",
]
