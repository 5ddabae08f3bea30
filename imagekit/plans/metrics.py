"""Prometheus textfile metrics of the export job (node_exporter's textfile collector format).

Pure rendering; ``records.write_atomic`` puts the file in place. Times are Unix seconds. The age
metrics are as of the run's end: alert on ``time() - imagekit_image_timestamp_seconds``, which
keeps growing while runs fail, rather than on ``imagekit_rpo_seconds``, which does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from imagekit.plans.status import StatusReport

PREFIX = "imagekit_"


@dataclass(frozen=True)
class RunFigures:
    """The numbers of one run that the metrics carry besides the status report."""

    plan: str
    started: float
    finished: float
    ok: bool
    failures: int
    last_success: float | None  # this run's end if it succeeded, else the previous success
    bytes_read: Mapping[str, int] = field(default_factory=dict)  # role → bytes read from AWS
    bytes_uploaded: Mapping[str, int] = field(default_factory=dict)  # store → bytes written


@dataclass(frozen=True)
class _Family:
    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _lines(families: Iterable[_Family]) -> Iterable[str]:
    for fam in families:
        if not fam.samples:
            continue
        name = PREFIX + fam.name
        yield f"# HELP {name} {fam.help}"
        yield f"# TYPE {name} gauge"
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            yield f"{name}{{{text}}} {_number(value)}"


def render(run: RunFigures, status: StatusReport) -> str:
    plan = {"plan": run.plan}
    rows = list(status.roles)
    objectives = sorted({(r.role, r.rpo_objective) for r in rows})
    fams = [
        _Family(
            "export_last_run_timestamp_seconds",
            "End of the last run-export.",
            [(plan, run.finished)],
        ),
        _Family(
            "export_last_success_timestamp_seconds",
            "End of the last run-export that had no failure.",
            [(plan, run.last_success)] if run.last_success is not None else [],
        ),
        _Family(
            "export_success", "1 if the last run-export had no failure.", [(plan, float(run.ok))]
        ),
        _Family("export_failures", "Failures in the last run-export.", [(plan, run.failures)]),
        _Family(
            "export_duration_seconds",
            "Wall time of the last run-export.",
            [(plan, max(0.0, run.finished - run.started))],
        ),
        _Family(
            "export_bytes_read",
            "Bytes read from AWS by the last run, per role.",
            [({**plan, "role": k}, v) for k, v in sorted(run.bytes_read.items())],
        ),
        _Family(
            "export_bytes_uploaded",
            "Bytes written to each store by the last run (exports and copies).",
            [({**plan, "store": k}, v) for k, v in sorted(run.bytes_uploaded.items())],
        ),
        _Family(
            "guest_bootable",
            "1 if the guest preflight found the role's newest image bootable on the target.",
            [
                ({**plan, "role": g.role, "target": g.target}, float(g.bootable))
                for g in status.guests
            ],
        ),
        _Family(
            "image_timestamp_seconds",
            "Point in time of the newest image's data per role and store (snapshot set start or "
            "AMI creation).",
            [
                (_where(run.plan, r.role, r.store), r.point_in_time.timestamp())
                for r in rows
                if r.point_in_time
            ],
        ),
        _Family(
            "rpo_seconds",
            "Age of the newest image per role and store at the end of the run.",
            [(_where(run.plan, r.role, r.store), r.age) for r in rows if r.age is not None],
        ),
        _Family(
            "rpo_objective_seconds",
            "The plan's recovery point objective per role.",
            [({**plan, "role": role}, rpo) for role, rpo in objectives],
        ),
        _Family(
            "image_verified",
            "1 if the newest image's data was read back and authenticated.",
            [(_where(run.plan, r.role, r.store), float(r.verified is not None)) for r in rows],
        ),
        _Family(
            "objective_met",
            "1 if a verified image no older than the RPO is in the store.",
            [(_where(run.plan, r.role, r.store), float(r.ok)) for r in rows],
        ),
    ]
    return "\n".join(_lines(fams)) + "\n"


def _where(plan: str, role: str, store: str) -> dict[str, str]:
    return {"plan": plan, "role": role, "store": store}


__all__ = ["RunFigures", "render"]
