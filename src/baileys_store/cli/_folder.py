"""``baileys-store import`` (one folder or a tree) and ``export``: Baileys auth folders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.table import Table

from .._store import AuthStore
from ..errors import InvalidInputError
from ..integrations._tree import TreeTemplate, import_tree
from ..integrations.baileys_folder import (
    ExportReport,
    Flavour,
    ImportReport,
    export_folder,
    import_folder,
)
from ..integrations.baileys_folder import Progress as ProgressFn
from ._bar import progress_bar
from ._sessions import namespace_option, run_with_store, store_option


@contextmanager
def _progress(label: str) -> Iterator[ProgressFn]:
    """A transient rich bar on stderr, fed through a ``progress(done, total)`` callback."""
    with progress_bar(f"{label:<10}") as bar:
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
@click.option("--session", "session_id", default=None, help="Session to import into.")
@click.option(
    "--tree",
    "tree",
    metavar="TEMPLATE",
    default=None,
    help="Import every auth folder below FOLDER, named by its path: '{namespace}/{session}' "
    "or '{session}' (a part may add literal text, e.g. 'wa-{session}').",
)
@click.option(
    "--namespace",
    default=None,
    help="Tenant namespace [default: default; with --tree, not with a {namespace} template].",
)
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
    session_id: str | None,
    tree: str | None,
    namespace: str | None,
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

    With --tree, every folder below FOLDER that holds creds.json is imported, its namespace
    and session taken from its path (auth_data/clinic_1/channel_3 with '{namespace}/{session}'
    is clinic_1/channel_3): one line per folder, a folder that fails (a path that does not
    match, an invalid name, a bad file, other creds already stored) does not stop the others;
    the exit status is 1 when any failed.
    """
    wanted = None if flavour == "auto" else cast("Flavour", flavour)
    options: dict[str, Any] = {
        "flavour": wanted,
        "replace": replace,
        "skip_unknown": skip_unknown,
        "extra_types": extra_types,
        "batch_size": batch_size,
    }
    if tree is not None:
        if session_id is not None:
            raise click.UsageError("--session and --tree exclude each other")
        _import_tree(folder, tree, namespace, options, store_url)
        return
    if session_id is None:
        raise click.UsageError("give --session (or --tree to import a tree of folders)")
    namespace = namespace or "default"

    async def run(store: AuthStore) -> ImportReport:
        with _progress("importing") as progress:
            return await import_folder(
                store, folder, session_id, namespace=namespace, progress=progress, **options
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


def _import_tree(
    root: Path, template: str, namespace: str | None, options: dict[str, Any], store_url: str | None
) -> None:
    """``import ROOT --tree TEMPLATE``: one line per folder as it is done; exit 1 on a failure."""
    try:
        parsed = TreeTemplate(template)
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None
    if parsed.has_namespace and namespace is not None:
        raise click.UsageError(f"--namespace and a {{namespace}} template ({template!r}) conflict")

    async def run(store: AuthStore) -> tuple[int, int]:
        ok = failed = 0
        async for result in import_tree(
            store, root, parsed, namespace=namespace or "default", **options
        ):
            if result.report is None:
                failed += 1
                click.secho(f"FAILED {result.folder}: {result.error}", fg="red", err=True)
                continue
            ok += 1
            click.echo(f"{result.namespace}/{result.session_id}: {_summary(result.report)}")
        return ok, failed

    ok, failed = run_with_store(store_url, run, create=True)
    click.echo(f"{ok} session(s) imported, {failed} folder(s) failed.")
    if failed:
        click.get_current_context().exit(1)


def _summary(report: ImportReport) -> str:
    total = sum(report.counts.values())
    creds = "creds saved" if report.creds_saved else "creds unchanged"
    extra = "".join(
        f", {len(names)} {what}"
        for what, names in (("skipped", report.skipped), ("empty", report.empty))
        if names
    )
    return f"{total} key(s) ({report.flavour}), {creds}, version {report.creds_version}{extra}"


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
