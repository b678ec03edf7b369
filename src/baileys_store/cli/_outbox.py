"""``baileys-store outbox status|drain|worker|dlq list|retry``: the write-behind outbox.

Both transports are handled the same way: with a broker outbox (``nats://``) the Redis cache
keeps its outbox as the pending mirror (see ``tiering/_broker.py``), so the ready index,
counters, drains and dead letters are the same; ``status`` adds the broker's stream totals and
``dlq retry`` forgets a session's broker dead letters once its cache has none left.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .._model import session_addr
from .._store import AuthStore
from ..contracts import Outbox, OutboxTransport
from ..errors import LeaseHeldError, StoreError, UnavailableError
from ._sessions import (
    cli_config,
    json_option,
    namespace_option,
    one_line,
    print_json,
    run_with_store,
    store_option,
)


def _outbox(store: AuthStore) -> Outbox:
    """The Redis outbox of the store's cache tier, or a ConfigError naming what is missing."""
    return store.outbox


def _transport(store: AuthStore) -> OutboxTransport | None:
    """The broker transport of the store (``None``: the Redis outbox alone)."""
    return store.outbox_transport


async def _transport_row(store: AuthStore) -> dict[str, Any]:
    transport = _transport(store)
    if transport is None:
        return {"name": "redis"}
    entries, dead = await transport.totals()
    return {
        "name": transport.name,
        "where": transport.describe(),
        "entries": entries,
        "dead_letters": dead,
    }


@click.group("outbox")
def outbox_group() -> None:
    """Inspect and drain the write-behind outbox (a Redis cache over a durable tier)."""


@outbox_group.command("status")
@click.option("--limit", default=20, show_default=True, help="Sessions to list.")
@json_option
@store_option
def status_command(*, limit: int, as_json: bool, store_url: str | None) -> None:
    """Sessions with pending entries, the lag, and the dead letters.

    --json keys: "ready_sessions" (sessions in the ready index), "oldest_pending_at" (unix
    seconds, null if none), "lag_seconds" (null if none), "dead_letter_sessions", and
    "sessions" (the first --limit of the ready index, oldest first: {"namespace",
    "session_id", "pending" (entries appended, not applied), "oldest_at" (unix seconds or
    null)}), "transport" ({"name": "redis"}, or for a broker {"name", "where" (servers and
    stream, no credentials), "entries" (held in the stream, not yet trimmed), "dead_letters"}).
    """

    async def fetch(store: AuthStore) -> tuple[Any, list[Any], int, dict[str, Any]]:
        outbox = _outbox(store)
        summary = await outbox.ready_summary()
        rows = []
        for addr in await outbox.ready_sessions(limit):
            appended, applied, oldest = await outbox.outbox_counters(addr)
            rows.append((addr, appended - applied, oldest))
        dead = [a async for a in outbox.dlq_sessions()]
        return summary, rows, len(dead), await _transport_row(store)

    (count, oldest), rows, dead, transport = run_with_store(store_url, fetch)
    lag_s = max(time.time() - oldest, 0.0) if oldest is not None else None
    if as_json:
        sessions = [
            {"namespace": a.namespace, "session_id": a.session_id, "pending": n, "oldest_at": t}
            for a, n, t in rows
        ]
        print_json(
            {
                "ready_sessions": count,
                "oldest_pending_at": oldest,
                "lag_seconds": round(lag_s, 3) if lag_s is not None else None,
                "dead_letter_sessions": dead,
                "sessions": sessions,
                "transport": transport,
            }
        )
        return
    out = Console(highlight=False, soft_wrap=True, markup=False)
    lag = f"{lag_s:.1f} s" if lag_s is not None else "-"
    out.print(f"Sessions in the ready index: {count}; lag: {lag}; with dead letters: {dead}")
    if transport["name"] != "redis":
        out.print(
            f"Broker outbox {transport['where']}: {transport['entries']} entries held, "
            f"{transport['dead_letters']} dead letters"
        )
    if rows:
        table = Table("Namespace", "Session", "Pending", "Oldest entry")
        for addr, pending, since in rows:
            when = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S") if since else "-"
            table.add_row(addr.namespace, addr.session_id, str(pending), when)
        out.print(table)


@outbox_group.command("drain")
@store_option
def drain_command(*, store_url: str | None) -> None:
    """Apply every pending entry to the durable tier now, then exit."""

    async def drain(store: AuthStore) -> int:
        _outbox(store)
        total = 0
        while applied := await store.drain_outbox():
            total += applied
        return total

    click.echo(f"Applied {run_with_store(store_url, drain)} outbox entries.")


@outbox_group.command("worker")
@click.option("--once", is_flag=True, help="Drain what is pending, then exit.")
@store_option
def worker_command(*, once: bool, store_url: str | None) -> None:
    """Run an outbox worker until SIGINT/SIGTERM (several may run at once, anywhere)."""
    if once:
        drain_command.callback(store_url=store_url)  # type: ignore[misc]
        return

    async def main() -> None:
        # The store's own worker drains, started at open; closing the store stops it.
        config = cli_config(store_url).model_copy(update={"outbox_worker": True})
        async with AuthStore(config) as store:
            _outbox(store)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            click.echo(f"Outbox worker {store.outbox_worker_id} running; Ctrl-C to stop.")
            await stop.wait()

    try:
        asyncio.run(main())
    except (StoreError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None
    click.echo("Outbox worker stopped.")


@outbox_group.group("dlq")
def dlq_group() -> None:
    """Dead letters: entries that failed ``outbox_max_attempts`` times."""


@dlq_group.command("list")
@store_option
def dlq_list_command(*, store_url: str | None) -> None:
    """Every dead letter: session, sequence, what it held (no values) and the error."""

    async def fetch(store: AuthStore) -> list[tuple[Any, Any]]:
        outbox = _outbox(store)
        return [(addr, await outbox.dead_letters(addr)) async for addr in outbox.dlq_sessions()]

    rows = run_with_store(store_url, fetch)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    table = Table("Session", "Seq", "Holds", "Error", "When")
    n = 0
    for addr, letters in rows:
        for letter in letters:
            entry = letter.entry
            holds = "creds" if entry.kind == "c" else f"{len(entry.writes)} key write(s)"
            when = datetime.fromtimestamp(letter.time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(str(addr), str(entry.seq), holds, letter.error, when)
            n += 1
    if not n:
        out.print("No dead letters.")
        return
    out.print(table)


@dlq_group.command("retry")
@click.argument("session_id", required=False)
@namespace_option
@click.option("--all", "every", is_flag=True, help="Every session with dead letters.")
@store_option
def dlq_retry_command(
    *, session_id: str | None, namespace: str, every: bool, store_url: str | None
) -> None:
    """Put dead letters back into the outbox, then drain them.

    Only records the cache shows are still current go back; a record a later write replaced
    is dropped (re-applying it would roll the newer value back). Entries that fail again
    return to the dead letters.
    """
    if every == (session_id is not None):
        raise click.UsageError("give a SESSION_ID or --all (not both)")

    async def retry(store: AuthStore) -> list[tuple[str, str]]:
        outbox = _outbox(store)
        if every:
            targets = [a async for a in outbox.dlq_sessions()]
        else:
            targets = [session_addr(namespace, session_id)]
        rows = []
        for addr in targets:
            try:
                done = await store.retry_dead_letters(addr.session_id, namespace=addr.namespace)
            except LeaseHeldError:
                rows.append((str(addr), "skipped: another process holds it (write-through)"))
                continue
            with contextlib.suppress(UnavailableError):
                await store.drain_outbox()
            left = len(await outbox.dead_letters(addr))
            transport = _transport(store)
            if transport is not None and not left:  # the broker's copies are done with too
                await transport.forget_dead(addr)
            rows.append(
                (
                    str(addr),
                    f"{done.letters} dead letter(s): {done.records} record(s) "
                    f"requeued, {done.superseded} superseded; {left} dead letter(s) now",
                )
            )
        return rows

    rows = run_with_store(store_url, retry)
    if not rows:
        click.echo("No dead letters.")
    for addr_text, line in rows:
        click.echo(f"{addr_text}: {line}")
