"""Boot commands: ``boot``, ``teardown``, ``runs``, ``providers``.

Runs are recorded under the state directory (``--state-dir`` or ``IMAGEKIT_STATE_DIR``, default
``~/.local/state/imagekit``), so ``teardown`` works from any shell. The store is opened as by
the store commands: ``--identity FILE`` (or ``IMAGEKIT_IDENTITY``), else the repository
passphrase (``IMAGEKIT_PASSPHRASE`` or a prompt).

The provider modules bring libcloud and paramiko, so they are imported inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from imagekit.cli.app import cli
from imagekit.cli.common import adapt_option, fingerprint_option, open_repository
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import UsageError
from imagekit.state import STATE_ENV

if TYPE_CHECKING:
    from imagekit.providers.runs import RunRecord

F = TypeVar("F", bound=Callable[..., Any])


def _state_option(f: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar=STATE_ENV,
        help=f"Where runs are recorded (default ~/.local/state/imagekit). Env: {STATE_ENV}.",
    )(f)


def _settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--setting {pair!r}: expected KEY=VALUE")
        settings[key] = value
    return settings


def _endpoints(record: RunRecord) -> list[str]:
    lines = []
    for node in record.nodes:
        where = ", ".join(f"{e.guest_port} → {e}" for e in node.endpoints) or "(no endpoints)"
        lines.append(f"  {node.name}: {where}")
    return lines


def _boot_text(result: dict[str, Any], record: RunRecord) -> str:
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in record.stages.items())
    total = sum(record.stages.values())
    lines = [f"run {record.run_id}: {record.status}", *_endpoints(record)]
    lines.append(f"  stages: {stages} (total {total:.1f} s)")
    lines += [f"  note: {n}" for n in record.notes]
    lines.append(f"  ssh key: {result['ssh_key']}")
    lines.append(f"tear down with: imagekit teardown {record.run_id}")
    return "\n".join(lines)


@cli.command()
@click.argument("ref")
@click.option("--store", "store_url", required=True, help="Repository URL or path.")
@click.option(
    "--identity",
    "identity_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="IMAGEKIT_IDENTITY",
    help="Identity file (else the repository passphrase). Env: IMAGEKIT_IDENTITY.",
)
@fingerprint_option
@click.option("--provider", "provider_name", default="local", show_default=True)
@click.option("--setting", "setting_pairs", multiple=True, help="Provider KEY=VALUE (repeatable).")
@click.option("--count", default=1, show_default=True, help="Number of nodes.")
@click.option("--size", help="Provider size, or an AWS instance type to map (default: image's).")
@click.option(
    "--user-data", type=click.Path(path_type=Path, dir_okay=False), help="User-data file."
)
@click.option("--role", help="User-data template role (default: the image's role metadata).")
@click.option("--port", "ports", multiple=True, type=int, help="Guest port to expose (22, 80).")
@click.option("--health", "checks", multiple=True, help="tcp:P, http[s]:P/PATH[~TEXT], ssh:CMD…")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to become healthy.")
@click.option(
    "--dry-run", is_flag=True, help="Print the calls a boot would make; make none, open nothing."
)
@adapt_option
@_state_option
@json_option
def boot(
    ref: str,
    store_url: str,
    identity_path: Path | None,
    fingerprint: str | None,
    provider_name: str,
    setting_pairs: tuple[str, ...],
    count: int,
    size: str | None,
    user_data: Path | None,
    role: str | None,
    ports: tuple[int, ...],
    checks: tuple[str, ...],
    timeout: float,
    dry_run: bool,
    adapt: bool | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Boot image REF from STORE on a provider and wait until healthy; nodes keep running.

    Checks: tcp:PORT, http:PORT/PATH[#STATUS][~TEXT], https:…, ssh:COMMAND, serial:TEXT
    (default: ssh:true, a login with the run's key).
    """
    from imagekit.providers.boot import DEFAULT_GUEST_PORTS, BootOptions, planned_boot
    from imagekit.providers.boot import boot as run_boot
    from imagekit.providers.registry import create_provider
    from imagekit.providers.runs import RunStore
    from imagekit.providers.sources import StoredImageSource

    runs = RunStore(state_dir)
    options = BootOptions(
        count=count,
        size=size,
        user_data=user_data,
        guest_ports=ports or DEFAULT_GUEST_PORTS,
        checks=checks,
        timeout=timeout,
        role=role,
        adapt=adapt,
    )
    provider = create_provider(
        provider_name, state_dir=runs.root, settings=_settings(setting_pairs)
    )
    if dry_run:
        calls = planned_boot(provider, ref, options)
        emit(
            {"dry_run": True, "provider": provider_name, "image": ref, "calls": calls},
            as_json,
            lambda r: "\n".join(f"{i}. {c}" for i, c in enumerate(r["calls"], 1)),
        )
        return
    with open_repository(store_url, identity_path, fingerprint) as repo:
        source = StoredImageSource(repo, repo.resolve(ref))
        with progress_bar() as bar:
            record = run_boot(
                provider,
                source,
                options,
                runs,
                progress=bar,
                on_run=lambda run: note(f"run {run.run_id}: booting {ref} on {provider_name}"),
            )
    result = record.as_dict()
    result["ssh_key"] = str(runs.runs_dir / record.run_id / "ssh" / "id_ed25519")
    emit(result, as_json, lambda r: _boot_text(r, record))


@cli.command()
@click.argument("run_id")
@_state_option
@json_option
def teardown(run_id: str, state_dir: Path | None, as_json: bool) -> None:
    """Delete everything run RUN_ID created (nodes, images, uploads) and its record."""
    from imagekit.providers.boot import teardown as run_teardown
    from imagekit.providers.runs import RunStore

    report = run_teardown(RunStore(state_dir), run_id)
    emit(
        report.as_dict(),
        as_json,
        lambda r: (
            f"run {run_id} torn down: deleted {', '.join(r['deleted']) or 'nothing'}"
            + (f"; already gone: {', '.join(r['already_gone'])}" if r["already_gone"] else "")
        ),
    )


@cli.command()
@_state_option
@json_option
def runs(state_dir: Path | None, as_json: bool) -> None:
    """List recorded runs (booted and not yet torn down), oldest first."""
    from imagekit.providers.runs import RunStore

    records = RunStore(state_dir).list()

    def human(_: Any) -> str:
        if not records:
            return "no runs"
        lines = []
        for r in records:
            lines.append(f"{r.run_id}  {r.status:12}  {r.image.get('name', '?')}  {r.created}")
            lines += _endpoints(r)
        return "\n".join(lines)

    emit([r.as_dict() for r in records], as_json, human)


@cli.command()
@json_option
def providers(as_json: bool) -> None:
    """List the providers and what each needs configured."""
    from imagekit.providers.registry import describe_providers

    found = describe_providers()

    def human(rows: list[dict[str, Any]]) -> str:
        lines = []
        width = max((len(p["name"]) for p in rows), default=0)
        for p in rows:
            lines.append(f"{p['name']:{width}} {p['description']} (boots {p['disk_format']})")
            for s in p["needs"]:
                how = f"env {s['env']}" if s["env"] else f"--setting {s['name']}=…"
                need = "needs" if s["required"] else "optional"
                lines.append(f"{'':{width}} {need} {s['name']} ({how}): {s['help']}")
        return "\n".join(lines)

    emit(found, as_json, human)
