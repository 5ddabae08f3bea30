"""The plan file's model: one production stack, its off-AWS stores and its targets.

Pydantic models with ``extra="forbid"`` (an unknown key is an error, never silently ignored) and
``frozen=True``. Field validators check what one value can tell; ``check_plan`` checks what needs
the whole plan (references between sections, cycles, objectives against the schedule) and returns
its problems with their paths, so the loader can point every one of them at a file line.

Secrets never live in a plan: stores and targets *reference* them (environment variable names, a
credentials file, an identity file). The loader rejects secret-looking keys and values anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from imagekit.errors import ImagekitError
from imagekit.store.retention import RetentionPolicy

PLAN_VERSION = 1
#: Providers a target may name (the registry in ``imagekit.providers`` implements them).
PROVIDERS = ("local", "gcp", "azure", "openstack", "rackspace", "null")
#: Variables the user-data renderer sets itself; a plan may not override them.
RESERVED_VARIABLES = frozenset({"hostname", "role", "ssh_authorized_keys", "host_keys"})
USER_DATA_PACKAGE = "imagekit.templates"
USER_DATA_FOLDER = "user-data"

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # roles, stores, targets: safe in paths, units and labels
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AMI_ID = r"^ami-[0-9a-f]{8,17}$"
_HHMM = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")
_EVERY = re.compile(r"^(?:hourly|daily|weekly|(?P<hours>\d{1,2})h|(?P<minutes>\d{1,2})m)$")
_INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_duration(value: object) -> float:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"26h"`` / ``"7d"`` / ``"2w"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 26h, 90m, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m["n"]) * _UNIT_SECONDS[m["unit"]]
    else:
        raise ValueError(f"{value!r} is not a duration (e.g. 3600, 90m, 26h, 7d)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a short human duration: ``93784`` → ``1d 2h 3m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts)


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"{value[:4]}… is not an environment variable name; "
            "reference secrets by the variable that holds them, never inline"
        )
    return value


def _check_health(value: str) -> str:
    from imagekit.providers.health import parse_check

    try:
        parse_check(value)
    except ImagekitError as exc:
        raise ValueError(exc.message) from exc
    return value


def _check_fingerprint(value: str) -> str:
    from imagekit.store.keys import normalize_fingerprint

    return normalize_fingerprint(value)


def _check_store_url(value: str) -> str:
    from imagekit.store.backends.registry import parse_store_url

    try:
        parse_store_url(value)
    except ImagekitError as exc:
        raise ValueError(exc.message) from exc
    return value


Name = Annotated[str, Field(pattern=_NAME)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(gt=0, lt=65536)]
HealthCheck = Annotated[str, AfterValidator(_check_health)]
StoreURL = Annotated[str, AfterValidator(_check_store_url)]
Fingerprint = Annotated[str, AfterValidator(_check_fingerprint)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- sources -------------------------------------------------------------------------------------


class AwsSpec(_Strict):
    """Where the AMIs live. Credentials come from boto3's chain (env, profile, instance role)."""

    region: str | None = None  # default region of every source
    profile: str | None = None  # a named profile of the AWS config files (a reference)
    concurrency: int = Field(default=8, ge=1, le=256)  # blocks fetched at once per volume


class HooksSpec(_Strict):
    """App-consistency commands run on the instance over SSH around its snapshot set."""

    host: str | None = None  # default: the instance's private IP address
    port: Port = 22
    user: str = "root"
    identity: Path  # the private key file that logs in (a reference, never the key)
    host_key: str  # the pinned public host key, "ssh-ed25519 AAAA…" (known_hosts form)
    pre: str | None = None  # e.g. "fsfreeze -f /data": no snapshot unless it exits 0
    post: str | None = None  # e.g. "fsfreeze -u /data": runs whenever pre was started
    timeout: Duration = 60.0  # hard limit per command; post still runs after a timeout

    @model_validator(mode="after")
    def _check(self) -> HooksSpec:
        if not (self.pre or self.post):
            raise ValueError("hooks need a pre and/or a post command")
        if len(self.host_key.split()) < 2:
            raise ValueError("host_key is 'TYPE BASE64' as in known_hosts, e.g. ssh-ed25519 AAAA…")
        return self


class InstanceSourceSpec(_Strict):
    """A running instance whose volumes imagekit snapshots itself (CreateSnapshots) each run."""

    id: Annotated[str, Field(pattern=_INSTANCE_ID)] | None = None
    tags: dict[str, str] = Field(default_factory=dict)  # must match exactly one instance
    exclude_boot_volume: bool = False  # data volumes only: an image that boots nothing
    hooks: HooksSpec | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> InstanceSourceSpec:
        if bool(self.id) == bool(self.tags):
            raise ValueError("name the instance by id or by tags (exactly one instance)")
        return self

    def describe_filters(self) -> dict[str, list[str]]:
        return {f"tag:{k}": [v] for k, v in self.tags.items()}


class SourceSpec(_Strict):
    """One role's source: an AMI (by id, or the newest matching filters, tags and/or a name
    pattern), or a running instance (``instance``), which supersedes the AMI it runs."""

    region: str | None = None
    ami: Annotated[str, Field(pattern=_AMI_ID)] | None = None
    filters: dict[str, str | list[str]] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    name: str | None = None  # AMI name pattern, e.g. "web-*"
    image_name: Name | None = None  # stored image (lineage) name; default: the role
    instance_type: str | None = None  # the AWS type it runs on: targets map sizes from it
    rpo: Duration | None = None  # this role's recovery point objective (default: the plan's)
    instance: InstanceSourceSpec | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> SourceSpec:
        by_query = bool(self.filters or self.tags or self.name)
        if self.instance is not None:
            if self.ami or by_query:
                raise ValueError("give either instance or an AMI (ami, filters/tags/name)")
            return self
        if self.ami and by_query:
            raise ValueError("give either ami or filters/tags/name, not both")
        if not self.ami and not by_query:
            raise ValueError("select the AMI: ami, or filters/tags/name (newest match wins)")
        return self

    def describe_filters(self) -> dict[str, list[str]]:
        """The EC2 DescribeImages filters this source means (tags as ``tag:KEY``)."""
        out = {k: [v] if isinstance(v, str) else list(v) for k, v in self.filters.items()}
        for key, value in self.tags.items():
            out.setdefault(f"tag:{key}", []).append(value)
        return out


# -- stores --------------------------------------------------------------------------------------


class KeyRef(_Strict):
    """How a store is opened: an identity file, or the repository passphrase.

    ``passphrase_env`` names the variable holding the identity file's passphrase (or, without an
    identity, the repository's).
    """

    identity: Path | None = None
    passphrase_env: EnvName = "IMAGEKIT_PASSPHRASE"


class StoreCredentials(_Strict):
    """Store credentials by reference: a credentials file section and/or named variables."""

    file: Path | None = None
    env: dict[Literal["key", "secret", "token"], EnvName] = Field(default_factory=dict)


class RetentionSpec(_Strict):
    keep_last: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=0, ge=0)
    keep_weekly: int = Field(default=0, ge=0)
    keep_monthly: int = Field(default=0, ge=0)

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)


class StoreSpec(_Strict):
    name: Name
    url: StoreURL
    #: The repository fingerprint `store init` printed; None: trust on first use.
    fingerprint: Fingerprint | None = None
    key: KeyRef = KeyRef()
    credentials: StoreCredentials = StoreCredentials()
    retention: RetentionSpec | None = None  # default: the plan's


class StoresSpec(_Strict):
    primary: StoreSpec
    replicas: list[StoreSpec] = Field(default_factory=list)

    def all(self) -> list[StoreSpec]:
        return [self.primary, *self.replicas]


# -- job settings --------------------------------------------------------------------------------


class ScheduleSpec(_Strict):
    """When ``run-export`` runs: ``hourly``, ``daily``, ``weekly``, every ``Nh`` (N | 24) or
    every ``Nm`` (N | 60: running instances' data can be fresher than hourly)."""

    every: str = "daily"
    at: str = "02:00"  # HH:MM, UTC; hourly and Nh use the minutes only (Nh: from this hour)
    weekday: Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] = "Sun"
    randomized_delay: Duration = 0.0
    user: Name = "root"  # the cron line's user field (/etc/cron.d format)

    @model_validator(mode="after")
    def _parse(self) -> ScheduleSpec:
        m = _EVERY.match(self.every)
        if m is None:
            raise ValueError(
                f"every: {self.every!r} is not hourly, daily, weekly, Nh or Nm (e.g. 1h, 6h, 15m)"
            )
        if m["hours"] is not None and (int(m["hours"]) < 1 or 24 % int(m["hours"])):
            raise ValueError(f"every: {self.every}: N must divide 24 (1, 2, 3, 4, 6, 8, 12, 24)")
        if m["minutes"] is not None and (int(m["minutes"]) < 5 or 60 % int(m["minutes"])):
            # Under 5 minutes a snapshot set is often not completed before the next is due.
            raise ValueError(f"every: {self.every}: N must divide 60 and be 5 or more (5–30)")
        if not _HHMM.match(self.at):
            raise ValueError(f"at: {self.at!r} is not HH:MM (24-hour, UTC)")
        return self

    @property
    def interval(self) -> float:
        """Seconds between runs."""
        m = _EVERY.match(self.every)
        assert m is not None
        if m["hours"] is not None:
            return int(m["hours"]) * 3600.0
        if m["minutes"] is not None:
            return int(m["minutes"]) * 60.0
        return {"hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}[self.every]

    @property
    def hour_minute(self) -> tuple[int, int]:
        m = _HHMM.match(self.at)
        assert m is not None
        return int(m["h"]), int(m["m"])


class ObjectivesSpec(_Strict):
    rpo: Duration  # newest verified image per role at most this old (data loss window)
    rto: Duration | None = None  # failover/rehearsal must reach healthy within this


class VerifySpec(_Strict):
    #: Chunks read back and authenticated per new image per store; ``--verify-all`` reads all.
    sample_chunks: int = Field(default=32, ge=0)


class OutputsSpec(_Strict):
    """Where run-export writes; default: ``<state dir>/plans/<plan>/``."""

    status_file: Path | None = None
    metrics_file: Path | None = None  # e.g. node_exporter's textfile collector folder


# -- targets -------------------------------------------------------------------------------------


class TargetCredentials(_Strict):
    """What a target's provider needs, by reference: variables that must be set, a key file."""

    env: list[EnvName] = Field(default_factory=list)
    file: Path | None = None


class UserDataSpec(_Strict):
    #: A template in the package's ``templates/user-data/`` (``web.j2``) or a path relative to
    #: the plan file (``./user-data/web.yaml``); ``*.j2`` files are rendered with ``variables``.
    template: str = "default.j2"
    variables: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_path(self) -> bool:
        return "/" in self.template


class StackRole(_Strict):
    image: Name | None = None  # the source role whose newest image boots (default: this role)
    count: int = Field(default=1, ge=1, le=100)
    #: A provider size id or name, or an AWS type to map; default: the source's instance_type.
    size: str | None = None
    depends_on: list[Name] = Field(default_factory=list)
    user_data: UserDataSpec = UserDataSpec()
    ports: list[Port] = Field(default_factory=lambda: [22])
    health: list[HealthCheck] = Field(default_factory=list)
    health_timeout: Duration = 600.0


class TargetSpec(_Strict):
    provider: Literal[
        "local",
        "gcp",
        "azure",
        "openstack",
        "rackspace",
        "null",
        "gcp-twin",
        "azure-twin",
        "openstack-twin",
    ]
    settings: dict[str, str | int | float | bool] = Field(default_factory=dict)  # not secret
    credentials: TargetCredentials = TargetCredentials()
    #: The guest stage (imagekit.guest): adapt each role's restored copy for this target.
    #: None: the provider's default (on for clouds and twins, off for local).
    adapt: bool | None = None
    stack: dict[Name, StackRole] = Field(min_length=1)


# -- the plan ------------------------------------------------------------------------------------


class Plan(_Strict):
    version: Literal[1]
    name: Name
    description: str = ""
    aws: AwsSpec = AwsSpec()
    sources: dict[Name, SourceSpec] = Field(min_length=1)
    stores: StoresSpec
    retention: RetentionSpec = RetentionSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    objectives: ObjectivesSpec
    verify: VerifySpec = VerifySpec()
    outputs: OutputsSpec = OutputsSpec()
    targets: dict[Name, TargetSpec] = Field(default_factory=dict)

    def image_name(self, role: str) -> str:
        """The stored image (lineage) name of a source role."""
        return self.sources[role].image_name or role

    def region(self, role: str) -> str | None:
        return self.sources[role].region or self.aws.region

    def rpo(self, role: str) -> float:
        return self.sources[role].rpo or self.objectives.rpo

    def retention_for(self, store: StoreSpec) -> RetentionSpec:
        return store.retention or self.retention

    def store(self, name: str) -> StoreSpec:
        for store in self.stores.all():
            if store.name == name:
                return store
        raise KeyError(name)

    def resolve_paths(self, base_dir: Path) -> Plan:
        """The plan with relative file paths made absolute against ``base_dir`` (the plan's
        folder), so a job started from any working directory (cron, systemd) finds them."""

        def path(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else base_dir / p

        def store(s: StoreSpec) -> StoreSpec:
            url = s.url
            if "://" not in url and not Path(url).is_absolute():
                url = str(base_dir / url)
            key = s.key.model_copy(update={"identity": path(s.key.identity) or s.key.identity})
            creds = s.credentials
            creds = creds.model_copy(update={"file": path(creds.file) or creds.file})
            return s.model_copy(update={"url": url, "key": key, "credentials": creds})

        def source(spec: SourceSpec) -> SourceSpec:
            hooks = spec.instance.hooks if spec.instance else None
            if spec.instance is None or hooks is None:
                return spec
            hooks = hooks.model_copy(update={"identity": path(hooks.identity) or hooks.identity})
            instance = spec.instance.model_copy(update={"hooks": hooks})
            return spec.model_copy(update={"instance": instance})

        stores = StoresSpec(
            primary=store(self.stores.primary), replicas=[store(r) for r in self.stores.replicas]
        )
        sources = {role: source(spec) for role, spec in self.sources.items()}
        outputs = OutputsSpec(
            status_file=path(self.outputs.status_file) or self.outputs.status_file,
            metrics_file=path(self.outputs.metrics_file) or self.outputs.metrics_file,
        )
        return self.model_copy(update={"stores": stores, "outputs": outputs, "sources": sources})

    def boot_order(self, target: str) -> list[list[str]]:
        """The target's roles in waves: each wave depends only on earlier ones."""
        stack = self.targets[target].stack
        done: set[str] = set()
        waves: list[list[str]] = []
        while len(done) < len(stack):
            wave = sorted(
                r for r, s in stack.items() if r not in done and set(s.depends_on) <= done
            )
            if not wave:
                raise ValueError(f"target {target}: depends_on has a cycle")
            waves.append(wave)
            done.update(wave)
        return waves


# -- whole-plan checks ---------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan: where (a path of keys/indexes) and what."""

    path: Path_
    message: str


def _packaged_templates() -> set[str]:
    folder = resources.files(USER_DATA_PACKAGE) / USER_DATA_FOLDER
    return {entry.name for entry in folder.iterdir() if entry.name.endswith(".j2")}


def check_plan(plan: Plan, base_dir: Path | None = None) -> list[Problem]:
    """Problems only the whole plan shows; ``base_dir`` resolves relative template paths."""
    return (
        list(_check_stores(plan))
        + list(_check_sources(plan))
        + list(_check_targets(plan, base_dir))
    )


def _check_stores(plan: Plan) -> Iterator[Problem]:
    seen_names: dict[str, Path_] = {}
    seen_urls: dict[str, str] = {}
    stores: list[tuple[Path_, StoreSpec]] = [(("stores", "primary"), plan.stores.primary)]
    stores += [(("stores", "replicas", i), s) for i, s in enumerate(plan.stores.replicas)]
    for path, store in stores:
        if store.name in seen_names:
            yield Problem((*path, "name"), f"store name {store.name!r} is used twice")
        seen_names[store.name] = path
        url = store.url.split("?", 1)[0].rstrip("/")
        if url in seen_urls:
            yield Problem((*path, "url"), f"same store as {seen_urls[url]!r}: a replica elsewhere")
        seen_urls[url] = store.name


def _check_sources(plan: Plan) -> Iterator[Problem]:
    lineages: dict[str, str] = {}
    for role in plan.sources:
        if plan.region(role) is None:
            yield Problem(("sources", role), "no region: set region here or aws.region")
        name = plan.image_name(role)
        if name in lineages:
            yield Problem(
                ("sources", role, "image_name"),
                f"stored image name {name!r} is also role {lineages[name]!r}'s",
            )
        lineages[name] = role
    if plan.schedule.interval > plan.objectives.rpo:
        yield Problem(
            ("objectives", "rpo"),
            f"RPO {format_duration(plan.objectives.rpo)} is shorter than the schedule interval "
            f"({plan.schedule.every}): the objective can never hold",
        )
    for role, source in plan.sources.items():
        if source.rpo is not None and plan.schedule.interval > source.rpo:
            yield Problem(
                ("sources", role, "rpo"),
                f"RPO {format_duration(source.rpo)} is shorter than the schedule interval",
            )


def _check_targets(plan: Plan, base_dir: Path | None) -> Iterator[Problem]:
    from imagekit.providers.health import guest_ports, parse_check

    packaged: set[str] | None = None
    for tname, target in plan.targets.items():
        for role, spec in target.stack.items():
            here: Path_ = ("targets", tname, "stack", role)
            source = spec.image or role
            if source not in plan.sources:
                field = "image" if spec.image else None
                yield Problem(
                    (*here, field) if field else here,
                    f"no source role {source!r} to boot from (sources: {', '.join(plan.sources)})",
                )
            elif (inst := plan.sources[source].instance) and inst.exclude_boot_volume:
                yield Problem(
                    here,
                    f"source {source!r} excludes the boot volume: its image boots nothing",
                )
            for i, dep in enumerate(spec.depends_on):
                if dep == role:
                    yield Problem((*here, "depends_on", i), "a role cannot depend on itself")
                elif dep not in target.stack:
                    yield Problem((*here, "depends_on", i), f"no role {dep!r} in this stack")
            exposed = set(spec.ports)
            needed = guest_ports([parse_check(c) for c in spec.health])
            for port in sorted(needed - exposed):
                yield Problem((*here, "health"), f"a check uses port {port}, not in ports")
            bad = sorted(RESERVED_VARIABLES & set(spec.user_data.variables))
            if bad:
                yield Problem(
                    (*here, "user_data", "variables"),
                    f"{', '.join(bad)}: set by imagekit itself; choose other names",
                )
            template = spec.user_data.template
            if spec.user_data.is_path:
                if base_dir is not None and not (base_dir / template).is_file():
                    yield Problem((*here, "user_data", "template"), f"{template}: no such file")
            else:
                packaged = _packaged_templates() if packaged is None else packaged
                if template not in packaged:
                    yield Problem(
                        (*here, "user_data", "template"),
                        f"no packaged template {template!r} (have: {', '.join(sorted(packaged))}; "
                        "a path with '/' is read relative to the plan file)",
                    )
        try:
            plan.boot_order(tname)
        except ValueError:
            yield Problem(("targets", tname, "stack"), "depends_on forms a cycle")


def describe(plan: Plan) -> Mapping[str, Any]:
    """A short summary (what ``plan validate --json`` prints on success)."""
    return {
        "name": plan.name,
        "roles": {r: plan.image_name(r) for r in plan.sources},
        "stores": [s.name for s in plan.stores.all()],
        "targets": {t: plan.boot_order(t) for t in plan.targets},
        "schedule": plan.schedule.every,
        "rpo_seconds": plan.objectives.rpo,
        "rto_seconds": plan.objectives.rto,
    }


__all__ = [
    "PLAN_VERSION",
    "PROVIDERS",
    "AwsSpec",
    "HooksSpec",
    "InstanceSourceSpec",
    "KeyRef",
    "ObjectivesSpec",
    "OutputsSpec",
    "Plan",
    "Problem",
    "RetentionSpec",
    "ScheduleSpec",
    "SourceSpec",
    "StackRole",
    "StoreCredentials",
    "StoreSpec",
    "StoresSpec",
    "TargetCredentials",
    "TargetSpec",
    "UserDataSpec",
    "VerifySpec",
    "check_plan",
    "describe",
    "format_duration",
    "parse_duration",
]
