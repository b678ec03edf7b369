"""``baileys-store backup`` and ``restore``: every session in one verified, portable file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .._store import AuthStore
from ..errors import StoreError
from ..integrations._backup import Progress as ProgressFn
from ..integrations._backup import backup, restore
from ..integrations._backup_file import BackupReader
from ..results import BackupReport, RestoreReport
from ._bar import progress_bar
from ._sessions import one_line, run_with_store, store_option


@contextmanager
def _progress() -> Iterator[ProgressFn]:
    """A transient rich bar on stderr (sessions done), one task per phase."""
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "-"


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@click.option("--overwrite", is_flag=True, help="Replace FILE if it exists.")
@store_option
def backup_command(
    *, file: Path, namespace: str | None, overwrite: bool, store_url: str | None
) -> None:
    """Write every session (creds and keys, as stored) to the backup FILE.

    Records stay as the store keeps them: an encrypted store's backup is encrypted under its
    master keys (their ids are in the file; restoring needs them). Pending write-behind
    entries are drained first. FILE appears only when complete (mode 0600). The format:
    docs/backup-format.md.
    """

    async def run(store: AuthStore) -> BackupReport:
        with _progress() as progress:
            return await backup(
                store, file, namespace=namespace, overwrite=overwrite, progress=progress
            )

    report = run_with_store(store_url, run)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    table = Table("Backup", str(report.path))
    table.columns[1].overflow = "fold"
    records = report.keys + report.creds
    for name, value in (
        ("sessions", str(report.sessions)),
        ("keys", str(report.keys)),
        ("creds", str(report.creds)),
        ("bytes", f"{report.bytes:,}"),
        ("encryption", report.encryption),
        ("master key ids", ", ".join(map(str, report.key_ids)) or "-"),
        ("sha256", report.sha256),
        ("time", f"{report.seconds:.2f} s ({_rate(records, report.seconds)} records)"),
    ):
        table.add_row(name, value)
    out.print(table)


def _as_json(report: RestoreReport) -> dict[str, Any]:
    """The ``restore --json`` document (keys documented in docs/backup-format.md)."""
    return {
        "ok": report.ok,
        "file": report.path,
        "format_version": report.format_version,
        "created_at": report.created_at,
        "source": {"encryption": report.encryption, "key_ids": list(report.key_ids)},
        "verified": True,
        "dry_run": report.dry_run,
        "sessions": report.sessions,
        "keys": report.keys,
        "creds": report.creds,
        "existing": list(report.existing),
        "restored": report.restored,
        "replaced": report.replaced,
        "in_use": list(report.in_use),
        "seconds": round(report.seconds, 3),
        "error": None,
    }


def _summary(report: RestoreReport) -> None:
    out = Console(highlight=False, soft_wrap=True, markup=False)
    verb = "would restore" if report.dry_run else "restored"
    table = Table("Restore", str(report.path))
    table.columns[1].overflow = "fold"
    for name, value in (
        ("format", f"{report.format_version} (written {report.created_at})"),
        ("encryption", report.encryption),
        ("master key ids", ", ".join(map(str, report.key_ids)) or "-"),
        ("verified", f"{report.sessions} sessions, {report.keys} keys, {report.creds} creds"),
        (verb, f"{report.restored} sessions ({report.replaced} replaced)"),
        ("time", f"{report.seconds:.2f} s"),
    ):
        table.add_row(name, value)
    out.print(table)
    if report.existing and not report.restored:
        shown = ", ".join(report.existing[:5]) + (", ..." if len(report.existing) > 5 else "")
        click.secho(
            f"{len(report.existing)} session(s) already exist here, nothing written "
            f"(--replace replaces them): {shown}",
            fg="red",
            err=True,
        )
    if report.in_use:
        click.secho(
            f"{len(report.in_use)} session(s) skipped, in use by another process: "
            + ", ".join(report.in_use[:5]),
            fg="red",
            err=True,
        )


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace sessions that exist in the store.")
@click.option("--dry-run", is_flag=True, help="Only verify the file (and report); write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@store_option
def restore_command(
    *, file: Path, replace: bool, dry_run: bool, as_json: bool, store_url: str | None
) -> None:
    """Verify the backup FILE completely, then write its sessions into the store.

    A truncated, altered or foreign file is refused before anything is written. Sessions the
    store already holds are refused (exit 1, nothing written) unless --replace. Sessions are
    restored to the addresses (namespace, session) they were backed up from; an encrypted
    backup needs the store configured with its master keys.
    """

    async def run(store: AuthStore) -> RestoreReport:
        if as_json:
            return await restore(store, file, replace=replace, dry_run=dry_run)
        with _progress() as progress:
            return await restore(store, file, replace=replace, dry_run=dry_run, progress=progress)

    try:
        # The file's envelope first: a missing or foreign file never opens (or creates) a store.
        try:
            BackupReader(file).close()
        except (StoreError, OSError) as exc:
            raise click.ClickException(one_line(exc)) from None
        report = run_with_store(store_url, run, create=True)
    except click.ClickException as exc:
        if as_json:  # a script still gets one document (and the exit status)
            click.echo(json.dumps({"ok": False, "error": exc.message}))
        raise
    if as_json:
        click.echo(json.dumps(_as_json(report)))
    else:
        _summary(report)
    if not report.ok:
        raise SystemExit(1)
