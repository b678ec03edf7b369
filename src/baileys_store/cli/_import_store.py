"""``baileys-store import-store``: sessions from baileys-redis-auth, mongo-baileys, store-core."""

from __future__ import annotations

import asyncio
from typing import cast

import click
from rich.console import Console
from rich.table import Table

from .._store import AuthStore
from ..errors import InvalidInputError, StoreError
from ..integrations._importers import (
    FORMATS,
    LAYOUTS,
    Layout,
    SessionResult,
    import_sessions,
    open_source,
)
from ._sessions import namespace_option, one_line, run_with_store, store_option


@click.command("import-store")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("source_url", metavar="SOURCE_URL")
@click.option("--session", "session", default=None, help="Import this one session.")
@click.option("--all", "all_sessions", is_flag=True, help="Import every session found.")
@namespace_option
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="hset",
    show_default=True,
    help="baileys-redis-auth only: useRedisAuthStateWithHSet ({session}:auth hash) or "
    "useRedisAuthState (one {session}:{type}-{id} key per item).",
)
@click.option(
    "--master-key",
    envvar="STORE_CORE_MASTER_KEY",
    default=None,
    metavar="HEX",
    help="store-core only: its masterKey, to read encrypted data [env: STORE_CORE_MASTER_KEY].",
)
@click.option("--replace", is_flag=True, help="Overwrite sessions holding different creds.")
@store_option
def import_store_command(
    *,
    fmt: str,
    source_url: str,
    session: str | None,
    all_sessions: bool,
    namespace: str,
    layout: str,
    master_key: str | None,
    replace: bool,
    store_url: str | None,
) -> None:
    """Import sessions from another store's FORMAT at SOURCE_URL (read-only on the source).

    FORMAT is baileys-redis-auth (redis://), mongo-baileys (mongodb://HOST/DB, one collection
    per session) or store-core (@luoarch/baileys-store-core: redis:// or
    mongodb://HOST/DB?collection=sessions). Each session is read whole and checked, then
    written keys first, creds last. Rerunning gives the same result; a failing session is
    reported and the others are still imported (exit 1 if any failed).
    """
    if (session is None) == (not all_sessions):
        raise click.UsageError("pass exactly one of --session S or --all")
    wanted = cast("Layout", layout)

    async def probe() -> list[str]:
        # Reach the source and find the sessions before the destination is even opened.
        source = await open_source(fmt, source_url, layout=wanted, master_key=master_key)
        try:
            return [session] if session is not None else await source.sessions()
        finally:
            await source.aclose()

    try:
        names = asyncio.run(probe())
    except StoreError as exc:
        raise click.ClickException(one_line(exc)) from None
    if not names:
        raise click.ClickException(
            one_line(InvalidInputError(f"no {fmt} sessions found at the source"))
        )

    async def run(store: AuthStore) -> list[SessionResult]:
        source = await open_source(fmt, source_url, layout=wanted, master_key=master_key)
        try:
            return await import_sessions(store, source, names, namespace=namespace, replace=replace)
        finally:
            await source.aclose()

    results = run_with_store(store_url, run, create=True)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    for r in results:
        if r.error:
            click.secho(f"{r.session}: FAILED: {r.error}", fg="red", err=True)
            continue
        creds = "creds saved" if r.creds_saved else "creds unchanged"
        out.print(f"{r.session}: {sum(r.counts.values())} keys, {creds} (v{r.creds_version})")
        for note in r.notes:
            click.secho(f"{r.session}: {note}", fg="yellow", err=True)
    table = Table("Key type", "Imported")
    totals: dict[str, int] = {}
    for r in results:
        for key_type, n in r.counts.items():
            totals[key_type] = totals.get(key_type, 0) + n
    for key_type, n in sorted(totals.items()):
        table.add_row(key_type, str(n))
    failed = sum(1 for r in results if r.error)
    table.add_row("total", str(sum(totals.values())), style="bold")
    out.print(table)
    out.print(f"{len(results) - failed} session(s) imported into {namespace}, {failed} failed")
    if failed:
        raise SystemExit(1)
