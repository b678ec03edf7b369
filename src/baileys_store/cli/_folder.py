"""``baileys-store import`` and ``export``: Baileys multi-file auth folders in and out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._store import AuthStore
from ..integrations.baileys_folder import (
    ExportReport,
    Flavour,
    ImportReport,
    export_folder,
    import_folder,
)
from ..integrations.baileys_folder import Progress as ProgressFn
from ._sessions import namespace_option, run_with_store, store_option


@contextmanager
def _progress(label: str) -> Iterator[ProgressFn]:
    """A transient rich bar on stderr, fed through a ``progress(done, total)`` callback."""
    console = Console(stderr=True)
    with Progress(
        TextColumn(f"{label:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # no stray output in pipes and logs
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _counts_table(counts: dict[str, int], verb: str) -> Table:
    table = Table("Key type", verb)
    for key_type, n in sorted(counts.items()):
        table.add_row(key_type, str(n))
    table.add_row("total", str(sum(counts.values())), style="bold")
    return table


@click.command("import")
@click.argument(
    "folder", type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path)
)
@click.option("--session", "session_id", required=True, help="Session to import into.")
@namespace_option
@click.option(
    "--flavour",
    type=click.Choice(["auto", "node", "pyaileys"]),
    default="auto",
    show_default=True,
    help="Folder format: Node Baileys (camelCase creds) or pyaileys (snake_case); auto "
    "tells them apart by creds.json.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Import over a session that holds different creds (its keys are cleared first).",
)
@click.option(
    "--key-type",
    "extra_types",
    multiple=True,
    metavar="TYPE",
    help="Accept files of this key type too (repeatable), e.g. one newer than this version.",
)
@click.option(
    "--skip-unknown", is_flag=True, help="Import the rest when some files match no key type."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Files per atomic write.",
)
@store_option
def import_command(
    *,
    folder: Path,
    session_id: str,
    namespace: str,
    flavour: str,
    replace: bool,
    extra_types: tuple[str, ...],
    skip_unknown: bool,
    batch_size: int,
    store_url: str | None,
) -> None:
    """Import a Baileys multi-file auth FOLDER (useMultiFileAuthState) into a session.

    Reads creds.json and every {type}-{id}.json (Node Baileys or pyaileys format, Buffers in
    any BufferJSON form). Keys are written first, one atomic write per batch, then the creds.
    Running it again gives the same result, and finishes an import that was interrupted.
    """
    wanted = None if flavour == "auto" else cast("Flavour", flavour)

    async def run(store: AuthStore) -> ImportReport:
        with _progress("importing") as progress:
            return await import_folder(
                store,
                folder,
                session_id,
                namespace=namespace,
                flavour=wanted,
                replace=replace,
                skip_unknown=skip_unknown,
                extra_types=extra_types,
                batch_size=batch_size,
                progress=progress,
            )

    report = run_with_store(store_url, run, create=True)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    out.print(f"Imported {folder} ({report.flavour} format) into {namespace}/{session_id}")
    out.print(_counts_table(report.counts, "Imported"))
    state = "saved" if report.creds_saved else "unchanged (already stored)"
    out.print(f"creds: {state}, version {report.creds_version}")
    for what, names in (("skipped (unknown type)", report.skipped), ("empty", report.empty)):
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            click.secho(f"{len(names)} file(s) {what}: {shown}", fg="yellow", err=True)


@click.command("export")
@click.argument("session_id", metavar="SESSION")
@click.argument("folder", type=click.Path(file_okay=False, writable=True, path_type=Path))
@namespace_option
@click.option(
    "--flavour",
    type=click.Choice(["node", "pyaileys"]),
    default=None,
    help="Folder format [default: the one the stored creds are in; the other is refused].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write into a non-empty FOLDER, replacing its creds.json and deleting its other "
    "*.json files that are not in the session.",
)
@store_option
def export_command(
    *,
    session_id: str,
    folder: Path,
    namespace: str,
    flavour: str | None,
    overwrite: bool,
    store_url: str | None,
) -> None:
    """Write SESSION as a Baileys multi-file auth FOLDER that useMultiFileAuthState loads.

    Every file is written atomically; creds.json comes last. FOLDER is created if missing and
    must be empty unless --overwrite.
    """
    wanted = cast("Flavour | None", flavour)

    async def run(store: AuthStore) -> ExportReport:
        with _progress("exporting") as progress:
            return await export_folder(
                store,
                session_id,
                folder,
                namespace=namespace,
                flavour=wanted,
                overwrite=overwrite,
                progress=progress,
            )

    report = run_with_store(store_url, run)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    out.print(f"Exported {namespace}/{session_id} to {folder} ({report.flavour} format)")
    out.print(_counts_table(report.counts, "Exported"))
    if report.removed:
        out.print(f"Removed {len(report.removed)} stale file(s) from {folder}.")
