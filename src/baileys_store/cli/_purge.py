"""``baileys-store purge --older-than 30d``: explicit retention (nothing expires by itself)."""

from __future__ import annotations

import re

import click

from .._store import AuthStore
from ..results import PurgeReport
from ._sessions import run_with_store, store_option

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise click.BadParameter("expected a positive number and a unit: 90s, 15m, 12h, 30d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Delete sessions not written for this long: 90s, 15m, 12h, 30d.",
)
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_option
def purge_command(
    *, older_than: str, namespace: str | None, dry_run: bool, yes: bool, store_url: str | None
) -> None:
    """Delete every session (creds and keys) whose last write is older than DURATION.

    Sessions another process holds right now are skipped. Asks first unless --yes or --dry-run.
    """
    seconds = parse_duration(older_than)
    if not (yes or dry_run):
        try:
            where = f" in {namespace}" if namespace else ""
            question = f"Delete every session not written for {older_than}{where}?"
            ok = click.confirm(question, default=False)
        except click.Abort:
            raise click.ClickException("nothing purged: no confirmation (pass --yes)") from None
        if not ok:
            raise click.ClickException("nothing purged")

    async def purge(store: AuthStore) -> PurgeReport:
        return await store.purge(seconds, namespace=namespace, dry_run=dry_run)

    report = run_with_store(store_url, purge)
    if dry_run:
        click.echo(f"{report.matched} session(s) older than {older_than} would be deleted.")
        return
    click.echo(
        f"Deleted {report.deleted} of {report.matched} session(s) older than "
        f"{older_than}; {report.in_use} skipped (in use by another process)."
    )
