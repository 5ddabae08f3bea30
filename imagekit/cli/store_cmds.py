"""Repository commands: ``key``, ``store``, ``ingest``, ``images``, ``restore``.

Keys: ``--identity FILE`` (or ``IMAGEKIT_IDENTITY``) opens a repository with an identity file;
without one, the repository passphrase is used (``IMAGEKIT_PASSPHRASE`` or a prompt). Identity
files are themselves unlocked with ``IMAGEKIT_PASSPHRASE`` or a prompt.

The store modules (crypto, pydantic, backends) are imported inside the commands, so loading this
module to run one command costs only click.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagekit.cli.app import cli
from imagekit.cli.common import (
    fingerprint_option,
    identity_option,
    open_backend,
    open_repository,
)
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from imagekit.store.keys import Access

#: Where ``key add --passphrase`` reads the new passphrase when not prompting.
NEW_PASSPHRASE_ENV = "IMAGEKIT_NEW_PASSPHRASE"

FORMATS = ["raw", "qcow2", "vmdk", "vhd-azure", "vhdx", "gce"]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _slot_row(x: dict[str, Any]) -> str:
    legacy = "  (version 1: `store upgrade`)" if x["version"] == 1 else ""
    return f"{x['access']:5} {x['type']:6} {x['recipient'] or '-'}  {x['name']}{legacy}"


# -- key ------------------------------------------------------------------------------------


@cli.group()
def key() -> None:
    """Identities (X25519 key pairs) and the key slots of a repository."""


@key.command("generate")
@click.option("-o", "--output", "path", required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing identity file.")
def key_generate(path: Path, force: bool) -> None:
    """Write a new identity file (0600); print its recipient on stdout."""
    from imagekit.store.identity import Identity, env_or_prompt, write_identity

    identity = Identity.generate()
    write_identity(path, identity, env_or_prompt(f"new passphrase for {path}", True), force=force)
    click.echo(identity.recipient)


@key.command("add")
@click.argument("store")
@click.option("--recipient", help="Recipient (ikr1…) to grant access.")
@click.option("--passphrase", "use_passphrase", is_flag=True, help="Add a passphrase slot.")
@click.option("--write-only", is_flag=True, help="Grant adding images only (export hosts).")
@identity_option
@fingerprint_option
def key_add(
    store: str,
    recipient: str | None,
    use_passphrase: bool,
    write_only: bool,
    identity_path: Path | None,
    fingerprint: str | None,
) -> None:
    """Grant a recipient or a new passphrase access to STORE."""
    if (recipient is None) == (not use_passphrase):
        raise UsageError("give exactly one of --recipient or --passphrase")
    access: Access = "write" if write_only else "read"
    with open_repository(store, identity_path, fingerprint) as repo:
        if recipient is not None:
            name = repo.add_recipient(recipient, access)
        else:
            new = os.environ.get(NEW_PASSPHRASE_ENV) or click.prompt(
                "new repository passphrase", hide_input=True, confirmation_prompt=True
            )
            name = repo.add_passphrase(new, access)
    note(f"added {access} key slot {name}")


@key.command("remove")
@click.argument("store")
@click.option("--recipient", required=True, help="Recipient (ikr1…) whose slots to delete.")
@identity_option
@fingerprint_option
def key_remove(
    store: str, recipient: str, identity_path: Path | None, fingerprint: str | None
) -> None:
    """Remove a recipient's key slots (the data is not re-encrypted; see docs/format.md).

    Only slots written with the repository's keys count: planted ones are ignored with a
    warning, and the last genuine read slot is never removed.
    """
    with open_repository(store, identity_path, fingerprint) as repo:
        gone = repo.remove_recipient(recipient)
    note(f"removed {len(gone)} key slot(s): {', '.join(gone)}")


@key.command("list")
@click.argument("store")
@click.option(
    "--keyless", is_flag=True, help="List what the bucket claims, unchecked (needs no key)."
)
@identity_option
@fingerprint_option
@json_option
def key_list(
    store: str,
    keyless: bool,
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """List the key slots of STORE written with its keys, and the keys' fingerprint.

    Slots that do not verify are left out with a warning naming each (anyone who can write the
    bucket can add one); those this key cannot check are listed apart as unverified. With
    --keyless, every slot and the fingerprint `config` declares, as claims of the bucket's.
    """
    from imagekit.store.slots import describe

    if keyless:
        from imagekit.store.repository import declared_fingerprint, describe_slots

        with open_backend(store) as backend:
            result: dict[str, Any] = {
                "verified": False,
                "fingerprint": declared_fingerprint(backend),
                "slots": describe_slots(backend),
            }
    else:
        with open_repository(store, identity_path, fingerprint) as repo:
            review = repo.review_slots()
            result = {
                "verified": True,
                "fingerprint": repo.fingerprint,
                "slots": [describe(n, s) for n, s in review.genuine],
                "unverified": [describe(n, s) for n, s in review.unverified],
                "ignored": review.planted,
            }

    def human(r: dict[str, Any]) -> str:
        if not r["verified"]:
            declared = r["fingerprint"] or "(none declared: written before fingerprints)"
            lines = [f"fingerprint {declared} (declared by config, unverified)"]
            return "\n".join(lines + [_slot_row(x) for x in r["slots"]])
        lines = [f"fingerprint {r['fingerprint']}"] + [_slot_row(x) for x in r["slots"]]
        if r["unverified"]:
            lines.append("unverified (this key cannot check them; not counted):")
            lines += [f"  {_slot_row(x)}" for x in r["unverified"]]
        return "\n".join(lines)

    emit(result, as_json, human)


# -- store ----------------------------------------------------------------------------------


@cli.group()
def store() -> None:
    """Create, check, prune and copy repositories."""


@store.command("init")
@click.argument("store_url", metavar="STORE")
@click.option("--recipient", "recipients", multiple=True, help="Reader recipient (repeatable).")
@click.option("--writer", "writers", multiple=True, help="Write-only recipient (repeatable).")
@click.option("--passphrase", "use_passphrase", is_flag=True, help="Readable with a passphrase.")
@json_option
def store_init(
    store_url: str,
    recipients: tuple[str, ...],
    writers: tuple[str, ...],
    use_passphrase: bool,
    as_json: bool,
) -> None:
    """Create an empty repository at STORE."""
    from imagekit.store.identity import env_or_prompt
    from imagekit.store.repository import Repository

    if not recipients and not use_passphrase:
        raise UsageError("give at least one --recipient, or --passphrase")
    passphrase = env_or_prompt("new repository passphrase", True) if use_passphrase else None
    with open_backend(store_url) as backend:
        repo = Repository.init(
            backend, recipients=recipients, passphrase=passphrase, writers=writers
        )
        result = {
            "url": backend.url,
            "id": repo.config.id.hex(),
            "fingerprint": repo.fingerprint,
            "key_slots": len(recipients) + len(writers) + (1 if use_passphrase else 0),
        }
        # This host made the keys: it trusts them without a first-use warning.
        from imagekit.state import state_dir
        from imagekit.store.trust import KnownStores

        KnownStores(state_dir()).record(backend.url, repo.fingerprint, quiet=True)
    emit(
        result,
        as_json,
        lambda r: (
            f"created repository {r['id']} at {r['url']}\n"
            f"fingerprint {r['fingerprint']} (pin it in plans as `fingerprint:`, or pass "
            "--fingerprint: clients then use no keys but these)"
        ),
    )


@store.command("verify")
@click.argument("store_url", metavar="STORE")
@click.option("--read-data", is_flag=True, help="Fetch, decrypt and check every chunk.")
@click.option("--keyless", is_flag=True, help="Check only what needs no key.")
@identity_option
@fingerprint_option
@json_option
def store_verify(
    store_url: str,
    read_data: bool,
    keyless: bool,
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """Check the repository's structure (and with --read-data, every chunk)."""
    from imagekit.store.verify import verify, verify_keyless

    if keyless:
        with open_backend(store_url) as backend:
            report = verify_keyless(backend)
    else:
        from imagekit.state import state_dir
        from imagekit.store.trust import SeenImages

        with (
            open_repository(store_url, identity_path, fingerprint) as repo,
            progress_bar() as bar,
        ):
            report = verify(repo, read_data=read_data, progress=bar, seen=SeenImages(state_dir()))
    emit(
        report.as_dict(),
        as_json,
        lambda r: (
            f"{r['images']} images, {r['packs']} packs, {r['chunks']} chunks"
            + (f", {r['chunks_read']} read" if read_data else "")
            + (
                f"; {len(r['problems'])} problems:\n  " + "\n  ".join(r["problems"])
                if r["problems"]
                else ": ok"
            )
        ),
    )
    if not report.ok:
        raise IntegrityError(f"{store_url}: verify found {len(report.problems)} problems")


@store.command("prune")
@click.argument("store_url", metavar="STORE")
@click.option("--keep-last", default=0, show_default=True, help="Newest N images per name.")
@click.option("--keep-daily", default=0, show_default=True, help="Newest per day, N days.")
@click.option("--keep-weekly", default=0, show_default=True, help="Newest per ISO week, N weeks.")
@click.option("--keep-monthly", default=0, show_default=True, help="Newest per month, N months.")
@click.option("--dry-run", is_flag=True, help="Show what would go; delete nothing.")
@identity_option
@fingerprint_option
@json_option
def store_prune(
    store_url: str,
    keep_last: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    dry_run: bool,
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """Forget images outside the retention policy and delete data nothing references."""
    from imagekit.store.prune import RetentionPolicy, prune

    policy = RetentionPolicy(keep_last, keep_daily, keep_weekly, keep_monthly)
    if policy.empty:
        raise UsageError("give at least one --keep-* option (an empty policy would keep all)")
    from imagekit.state import state_dir
    from imagekit.store.trust import SeenImages

    with open_repository(store_url, identity_path, fingerprint) as repo, progress_bar() as bar:
        report = prune(repo, policy, dry_run=dry_run, progress=bar)
        if not dry_run:
            SeenImages(state_dir()).forget(
                repo.url, [i.id for i in report.plan.drop], report.plan.keep
            )
    emit(
        report.as_dict(),
        as_json,
        lambda r: (
            f"{'would drop' if dry_run else 'dropped'} {len(r['dropped'])} images, "
            f"kept {len(r['kept'])}; {'would delete' if dry_run else 'deleted'} "
            f"{r['packs_deleted']} packs ({_size(r['bytes_freed'])})"
        ),
    )


@store.command("unlock")
@click.argument("store_url", metavar="STORE")
@click.argument("lock_name", metavar="LOCK")
@identity_option
@fingerprint_option
def store_unlock(
    store_url: str, lock_name: str, identity_path: Path | None, fingerprint: str | None
) -> None:
    """Remove lock LOCK (locks/…) when no live holder can own it: unreadable, stale, or held
    by a process of this host that no longer runs (killed, crashed).

    A fresh lock that decrypts is otherwise refused: its holder may be alive, and removing it
    could let a prune delete what that holder is writing.
    """
    from imagekit.store.locks import remove_lock

    with open_repository(store_url, identity_path, fingerprint) as repo:
        what = remove_lock(repo.backend, repo.meta, lock_name)
    note(f"removed {what}")


@store.command("upgrade")
@click.argument("store_url", metavar="STORE")
@click.option(
    "--recipient",
    "readers",
    multiple=True,
    help="Vouch that this recipient's old slot is a reader of yours (repeatable).",
)
@click.option(
    "--writer",
    "writers",
    multiple=True,
    help="Vouch that this recipient's old slot is a writer of yours (repeatable).",
)
@identity_option
@fingerprint_option
@json_option
def store_upgrade(
    store_url: str,
    readers: tuple[str, ...],
    writers: tuple[str, ...],
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """Give key slots written before slot MACs their MAC (crash-safe; rerun to finish).

    The slot this key opens is rewritten in place. A slot sealed to someone else cannot be
    checked: vouch for its recipient with --recipient/--writer (a new slot of this repository's
    keys replaces it), or let its holder run this command. The rest is left, unverified.
    """
    from imagekit.store.upgrade import upgrade_slots

    with open_repository(store_url, identity_path, fingerprint) as repo:
        report = upgrade_slots(repo, readers=readers, writers=writers)

    def human(r: dict[str, Any]) -> str:
        lines = [
            f"upgraded {len(r['upgraded'])} key slot(s) in place, replaced "
            f"{len(r['removed'])} with {len(r['added'])} new one(s)"
        ]
        if r["left"]:
            lines.append(
                f"{len(r['left'])} old slot(s) left unverified (vouch with --recipient/--writer "
                "if they are yours, or let their holders run `imagekit store upgrade`):"
            )
            lines += [f"  {_slot_row(x)}" for x in r["left"]]
        return "\n".join(lines)

    emit(report.as_dict(), as_json, human)


@store.command("copy")
@click.argument("src_url", metavar="SRC")
@click.argument("dst_url", metavar="DST")
@click.argument("refs", nargs=-1)
@identity_option
@click.option(
    "--dst-identity",
    "dst_identity_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Identity for DST (default: the same as for SRC).",
)
@fingerprint_option
@click.option("--dst-fingerprint", help="The repository fingerprint of DST (ikf1…).")
@json_option
def store_copy(
    src_url: str,
    dst_url: str,
    refs: tuple[str, ...],
    identity_path: Path | None,
    dst_identity_path: Path | None,
    fingerprint: str | None,
    dst_fingerprint: str | None,
    as_json: bool,
) -> None:
    """Copy images REF... (default: all) from SRC to DST, uploading only missing chunks."""
    from imagekit.store.copy import copy_images

    with (
        open_repository(src_url, identity_path, fingerprint) as src,
        open_repository(dst_url, dst_identity_path or identity_path, dst_fingerprint) as dst,
        progress_bar() as bar,
    ):
        report = copy_images(src, dst, refs, progress=bar)
    emit(
        report.as_dict(),
        as_json,
        lambda r: (
            f"copied {len(r['copied'])} images ({_size(r['bytes_uploaded'])} uploaded), "
            f"{len(r['skipped'])} already there"
        ),
    )


# -- ingest, images, restore ----------------------------------------------------------------


@cli.command()
@click.argument("disks", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--store", "store_url", required=True, help="Repository URL or path.")
@click.option("--name", required=True, help="Image name (its lineage).")
@click.option("--source", "source_label", help="Where the image came from (default: the paths).")
@click.option(
    "--source-format", help="Disk format (raw, qcow2, vmdk, vpc, vhdx); probed if omitted."
)
@click.option("--meta", "meta", multiple=True, help="KEY=VALUE metadata (repeatable).")
@identity_option
@fingerprint_option
@json_option
def ingest(
    disks: tuple[Path, ...],
    store_url: str,
    name: str,
    source_label: str | None,
    source_format: str | None,
    meta: tuple[str, ...],
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """Store disk images DISK... (one volume each) as one image NAME."""
    from imagekit.store.ingest import ingest as run_ingest
    from imagekit.store.sources import open_disk

    metadata = {}
    for item in meta:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--meta {item!r}: expected KEY=VALUE")
        metadata[k] = v
    with (
        open_repository(store_url, identity_path, fingerprint) as repo,
        contextlib.ExitStack() as stack,
    ):
        sources = [
            stack.enter_context(
                open_disk(
                    d, name=d.name if len(disks) > 1 else "disk0", source_format=source_format
                )
            )
            for d in disks
        ]
        with progress_bar() as bar:
            result = run_ingest(
                repo,
                sources,
                name=name,
                source=source_label or " ".join(str(d) for d in disks),
                metadata=metadata,
                progress=bar,
            )
    emit(
        result.as_dict(),
        as_json,
        lambda r: (
            f"stored image {r['id'][:12]} ({r['name']}): read {_size(r['bytes_read'])}, "
            f"uploaded {_size(r['bytes_uploaded'])}"
        ),
    )


@cli.command()
@click.option("--store", "store_url", required=True, help="Repository URL or path.")
@identity_option
@fingerprint_option
@json_option
def images(
    store_url: str, identity_path: Path | None, fingerprint: str | None, as_json: bool
) -> None:
    """List the images in a repository, oldest first."""
    with open_repository(store_url, identity_path, fingerprint) as repo:
        found = [i.summary() for i in repo.list_images()]

    def human(rows: list[dict[str, Any]]) -> str:
        lines = [f"{'ID':12}  {'CREATED':20}  {'NAME':20}  {'VOLUMES':>7}  {'STORED':>10}  SOURCE"]
        for r in rows:
            lines.append(
                f"{r['id'][:12]}  {r['created'][:19] + 'Z':20}  {r['name']:20}  "
                f"{len(r['volumes']):>7}  {_size(r['stored_size']):>10}  {r['source']}"
            )
        return "\n".join(lines)

    emit(found, as_json, human)


def _refuse_rollback(url: str, images: Any, lineage: str) -> None:
    """A name means "the newest image of it": when this host has seen a newer one there than
    the store now serves (rolled back, a manifest withheld or damaged), restoring the older one
    under that name would be silently wrong. An id still restores whatever it names."""
    from imagekit.state import state_dir
    from imagekit.store.trust import SeenImages

    found = SeenImages(state_dir()).check(url, images, [lineage])
    if found:
        raise IntegrityError(
            str(found[0]),
            hint="restore by image id to take an older image anyway; `imagekit store verify` "
            "reports what else is missing",
        )


@cli.command()
@click.argument("ref")
@click.option("--store", "store_url", required=True, help="Repository URL or path.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="raw", show_default=True, type=click.Choice(FORMATS))
@click.option("--force", is_flag=True, help="Replace existing outputs.")
@identity_option
@fingerprint_option
@json_option
def restore(
    ref: str,
    store_url: str,
    out: Path,
    fmt: str,
    force: bool,
    identity_path: Path | None,
    fingerprint: str | None,
    as_json: bool,
) -> None:
    """Restore image REF (id, id prefix, or name → newest) to OUT (a directory if multi-volume)."""
    from imagekit.store.restore import restore as run_restore

    with open_repository(store_url, identity_path, fingerprint) as repo:
        images = repo.list_images()
        image = repo.resolve(ref, images)
        if image.manifest.name == ref:
            _refuse_rollback(repo.url, images, ref)
        with progress_bar() as bar:
            files = run_restore(repo, image, out, fmt=fmt, force=force, progress=bar)
    result = {"id": image.id, "name": image.manifest.name, "files": files}
    emit(result, as_json, lambda r: "\n".join(f["path"] for f in r["files"]))
