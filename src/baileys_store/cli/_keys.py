"""``baileys-store keys rotate``: re-encrypt every record with the active master key."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .._store import AuthStore
from ..results import RotationReport
from ._sessions import run_with_store, store_option


@click.group("keys")
def keys_group() -> None:
    """Master-key operations."""


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
