"""``baileys-store keys rotate|prune-prekeys``: re-encrypt every record; drop spent pre-keys."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .._store import AuthStore
from ..integrations._prune import DEFAULT_KEEP, prune_prekeys
from ..results import PruneReport, RotationReport
from ._sessions import run_with_store, store_option


@click.group("keys")
def keys_group() -> None:
    """Key maintenance: master-key rotation, pre-key pruning."""


@keys_group.command("rotate")
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@click.option("--verify", is_flag=True, help="Only authenticate every record; write nothing.")
@store_option
def rotate_command(*, namespace: str | None, verify: bool, store_url: str | None) -> None:
    """Re-encrypt every creds and key record with the active master key.

    Online and resumable: records already under the active key are skipped, sessions another
    process holds are skipped and counted (run again, or rotate inside that process). Keys come
    from BAILEYS_STORE_MASTER_KEYS; when no record reports the old key any more, drop it.

    Every record is authenticated; any that fails (tampered, its key gone, plaintext in an
    encrypted store) is left as it is, counted, and the command exits 1. To encrypt a plaintext
    store, run it with BAILEYS_STORE_ALLOW_PLAINTEXT_READS=true, then drop that setting.
    """

    async def rotate(store: AuthStore) -> RotationReport:
        total = sum([1 async for _ in store.list_sessions(namespace)])
        label = "outdated" if verify else "re-encrypted"
        columns = (
            TextColumn("verifying" if verify else "rotating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[done]} " + label),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("rotate", total=total, done=0)

            def step(report: RotationReport) -> None:
                bar.update(task, completed=report.sessions, done=report.rewritten)

            return await store.rotate_keys(namespace=namespace, progress=step, verify=verify)

    report = run_with_store(store_url, rotate)
    done = "not under the active key" if verify else "re-encrypted"
    click.echo(
        f"{report.sessions} session(s): {report.rewritten} record(s) {done}, "
        f"{report.current} already current, {report.failed} failed, "
        f"{report.in_use} in use"
    )
    if report.failed:
        raise click.ClickException(
            f"{report.failed} record(s) failed to authenticate or decode (tampered, written "
            "with a key no longer configured, or plaintext in an encrypted store); they were "
            "left as they are"
        )
    if report.in_use:
        raise click.ClickException(f"{report.in_use} session(s) in use elsewhere: run again")


def prune_json(report: PruneReport) -> dict[str, Any]:
    """The ``--json`` document of ``prune-prekeys`` (keys documented in its help)."""
    return {
        "dry_run": report.dry_run,
        "keep": report.keep,
        "removed": report.removed,
        "kept": report.kept,
        "skipped": {
            "no_creds": report.no_creds,
            "no_mark": report.no_mark,
            "in_use": report.in_use,
        },
        "sessions": [
            {
                "namespace": s.namespace,
                "session_id": s.session_id,
                "status": s.status,
                "upload_mark": s.upload_mark,
                "removed": s.removed,
                "kept": s.kept,
            }
            for s in report.sessions
        ],
    }


@keys_group.command("prune-prekeys")
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@click.option(
    "--session", "session_id", default=None, metavar="S", help="Only this session [default: all]."
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=DEFAULT_KEEP,
    show_default=True,
    help="Pre-key ids kept below the upload mark (the server may still hand them out).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be removed; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (keys: see above).")
@store_option
def prune_prekeys_command(
    *,
    namespace: str | None,
    session_id: str | None,
    keep: int,
    dry_run: bool,
    as_json: bool,
    store_url: str | None,
) -> None:
    """Remove one-time pre-keys that can no longer be used.

    A session's pre-keys below its creds' firstUnuploadedPreKeyId minus --keep are deleted.
    Ids at or above that are kept, and so is the signed pre-key (it lives in the creds, which
    are never written). The default margin covers Baileys' largest upload batch (812) twice:
    the pre-keys the server may still hand out, and as many handed out whose first message has
    not arrived yet. Sessions without creds, or whose creds lack firstUnuploadedPreKeyId, are
    skipped and counted; so is a session another process holds (exit 1: run again). Safe next
    to a running application: ids only grow, none is ever reused.

    --json keys: "dry_run", "keep", "removed" and "kept" (pre-keys over every session),
    "skipped" ({"no_creds", "no_mark", "in_use"}: sessions), "sessions" (a list of
    {"namespace", "session_id", "status" (pruned, clean, no_creds, no_mark, in_use),
    "upload_mark" (null when skipped), "removed", "kept"}). With --dry-run, "removed" is what
    would be removed.
    """

    async def prune(store: AuthStore) -> PruneReport:
        return await prune_prekeys(
            store, namespace=namespace, session=session_id, keep=keep, dry_run=dry_run
        )

    report = run_with_store(store_url, prune)
    if session_id is not None and not report.sessions:
        where = f"{namespace}/{session_id}" if namespace else session_id
        raise click.ClickException(f"no session {where}")
    if as_json:
        click.echo(json.dumps(prune_json(report), ensure_ascii=False, indent=2))
    else:
        done = "would be removed" if dry_run else "removed"
        click.echo(
            f"{len(report.sessions)} session(s): {report.removed} pre-key(s) {done}, "
            f"{report.kept} kept (margin {keep}); skipped: {report.no_creds} without creds, "
            f"{report.no_mark} without an upload mark, {report.in_use} in use"
        )
    if report.in_use:
        raise click.ClickException(f"{report.in_use} session(s) in use elsewhere: run again")
