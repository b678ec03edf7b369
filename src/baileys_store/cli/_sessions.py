"""``baileys-store sessions list|inspect|stats|delete|touch``; the plumbing of one-shot commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.table import Table

from .._config import StoreConfig
from .._model import session_addr
from .._store import AuthStore
from ..backends.sqlite import SQLiteDurable
from ..errors import StoreError
from ..results import SessionInfo
from . import _report
from ._context import CliContext

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def store_option(f: F) -> F:
    """``--store URL`` on a command (it wins over the group's ``--store`` and the env)."""
    option = click.option(
        "--store",
        "store_url",
        metavar="URL",
        default=None,
        help="Durable store URL [default: the group's --store, else BAILEYS_STORE_DURABLE, "
        "else sqlite:///baileys-store.db]. Other settings come from BAILEYS_STORE_* variables.",
    )
    return option(f)


def namespace_option(f: F) -> F:
    """``--namespace N`` (default ``default``, as in :meth:`AuthStore.session`)."""
    return click.option(
        "--namespace", default="default", show_default=True, help="Tenant namespace."
    )(f)


def json_option(f: F) -> F:
    """``--json``: print one JSON document on stdout instead of tables."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (keys: see above)."
    )(f)


def print_json(document: Mapping[str, Any]) -> None:
    """``document`` on stdout as one JSON document (keys in the order built: stable)."""
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


def cli_config(store_url: str | None) -> StoreConfig:
    """Config of a one-shot command.

    An in-process ``memory://`` cache is dropped: a short command gains nothing from it, and
    without it SQLite is opened shared, so the command refuses (instead of writing behind its
    back) a database an application holds with its own in-process cache. A Redis cache stays:
    writes must reach it so that applications never read stale entries (and with leases on, a
    session a live process holds is refused with ``LeaseHeldError``).
    """
    parent = click.get_current_context().find_object(CliContext)
    config = CliContext(store_url or (parent.store_url if parent else None)).config()
    if config.cache is not None and urlsplit(config.cache).scheme == "memory":
        config = config.model_copy(update={"cache": None})
    # A one-shot command drains nothing in the background (``outbox worker`` does that).
    return config.model_copy(update={"outbox_worker": False})


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (StoreError messages carry no secrets)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def run_with_store(
    store_url: str | None, fn: Callable[[AuthStore], Awaitable[T]], *, create: bool = False
) -> T:
    """Open the store, run ``fn``, close; a store or file error becomes one line, exit 1.

    Args:
        store_url: The command's ``--store`` (else the group's, else the environment's).
        fn: The command's work.
        create: Create a missing SQLite file. Only a command that adds data (``import``)
            does: for the others a missing file is a ConfigError, so a typo in a path shows
            as an error instead of an empty store left behind.
    """

    async def main() -> T:
        store = AuthStore(cli_config(store_url))
        if isinstance(store.durable, SQLiteDurable):
            store.durable.create = create
        async with store:
            return await fn(store)

    try:
        return asyncio.run(main())
    except (StoreError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None


@click.group("sessions")
def sessions_group() -> None:
    """List, inspect, measure, touch and delete stored sessions."""


@sessions_group.command("list")
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@json_option
@store_option
def list_command(*, namespace: str | None, as_json: bool, store_url: str | None) -> None:
    """List sessions with their creds version and last write.

    --json keys: "sessions" (a list of {"namespace", "session_id", "creds_version" (0: no
    creds), "updated_at" (unix seconds of the last write, null if unknown)}) and "count".
    """

    async def fetch(store: AuthStore) -> list[SessionInfo]:
        return [info async for info in store.list_sessions(namespace)]

    infos = run_with_store(store_url, fetch)
    if as_json:
        rows = [
            {
                "namespace": info.namespace,
                "session_id": info.session_id,
                "creds_version": info.creds_version,
                "updated_at": info.updated_at or None,
            }
            for info in infos
        ]
        print_json({"sessions": rows, "count": len(rows)})
        return
    out = Console(highlight=False, soft_wrap=True, markup=False)
    if not infos:
        out.print("No sessions" + (f" in namespace {namespace}." if namespace else "."))
        return
    table = Table("Namespace", "Session", "Creds version", "Last write")
    table.columns[0].overflow = table.columns[1].overflow = "fold"
    for info in infos:
        version, when = str(info.creds_version), _report.when(info.updated_at)
        table.add_row(info.namespace, info.session_id, version, when)
    out.print(table)
    out.print(f"{len(infos)} session(s)")


@sessions_group.command("inspect")
@click.argument("session_id", metavar="SESSION")
@namespace_option
@json_option
@store_option
def inspect_command(
    *, session_id: str, namespace: str, as_json: bool, store_url: str | None
) -> None:
    """Show a session's creds version, account and key counts per type (no key material).

    --json keys: "namespace", "session_id", "creds_version" (0: no creds), "creds" (null
    without creds, else {"flavour": "node"|"pyaileys"|"unknown", "registered", "account" (the
    JID, null if not paired), "next_pre_key_id"}), "key_counts" ({type: keys}) and
    "total_keys" (both null when the backend cannot count).
    """

    async def fetch(
        store: AuthStore,
    ) -> tuple[int, dict[str, Any] | None, dict[str, int] | None, str]:
        session = store.session(session_id, namespace=namespace)
        version = await session.creds_version()
        creds = await session.load_creds() if version else None
        counts = await session.key_counts()
        return version, creds, counts, store.durable.name

    version, creds, counts, backend = run_with_store(store_url, fetch)
    if version == 0 and counts == {}:
        raise click.ClickException(f"no session {namespace}/{session_id}")
    facts = _report.creds_facts(creds) if creds else None
    if as_json:
        print_json(
            {
                "namespace": namespace,
                "session_id": session_id,
                "creds_version": version,
                "creds": facts,
                "key_counts": dict(sorted(counts.items())) if counts is not None else None,
                "total_keys": sum(counts.values()) if counts is not None else None,
            }
        )
        return
    out = Console(highlight=False, soft_wrap=True, markup=False)
    info = Table("Session", f"{namespace}/{session_id}", show_header=True)
    info.add_row("creds version", str(version) if version else "0 (no creds)")
    for row in _report.creds_rows(facts) if facts else []:
        info.add_row(*row)
    out.print(info)
    if counts is None:
        out.print(f"Key counts: not available (the {backend} backend cannot count keys).")
        return
    keys = Table("Key type", "Keys")
    for key_type, n in sorted(counts.items()):
        keys.add_row(key_type, str(n))
    keys.add_row("total", str(sum(counts.values())), style="bold")
    out.print(keys)


@sessions_group.command("stats")
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@json_option
@store_option
def stats_command(*, namespace: str | None, as_json: bool, store_url: str | None) -> None:
    """Keys and stored bytes per key type, and per session (keys, bytes, last write).

    Reads every record of every session (in chunks of 500 from the durable tier): expect it to
    take as long as an export of the whole store. Bytes are the blobs as stored (compressed,
    encrypted). With a write-behind cache, entries not drained yet are not counted.

    --json keys: "namespace" (null: all), "types" ({type: {"count", "bytes"}}), "sessions"
    (a list of {"namespace", "session_id", "updated_at" (unix seconds, null if unknown),
    "keys", "bytes"}) and "totals" ({"sessions", "keys", "bytes"}).
    """

    async def fetch(store: AuthStore) -> _report.StoreStats:
        return await _report.gather_stats(store, namespace)

    stats = run_with_store(store_url, fetch)
    if as_json:
        print_json(_report.stats_json(stats))
        return
    _report.print_stats(Console(highlight=False, soft_wrap=True, markup=False), stats)


@sessions_group.command("delete")
@click.argument("session_id", metavar="SESSION")
@namespace_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_option
def delete_command(*, session_id: str, namespace: str, yes: bool, store_url: str | None) -> None:
    """Delete a session: its creds and every key. Asks first unless --yes."""
    try:
        addr = session_addr(namespace, session_id)
    except StoreError as exc:
        raise click.ClickException(one_line(exc)) from None
    if not yes:
        try:
            confirmed = click.confirm(
                f"Delete session {addr} (creds and all keys)? This cannot be undone",
                default=False,
            )
        except click.Abort:  # no answer: stdin closed or not there
            raise click.ClickException(
                f"session {addr} not deleted: no confirmation (pass --yes)"
            ) from None
        if not confirmed:
            raise click.ClickException(f"session {addr} not deleted")

    async def delete(store: AuthStore) -> bool:
        return await store.session(session_id, namespace=namespace).delete()

    if not run_with_store(store_url, delete):
        raise click.ClickException(f"no session {addr}")
    click.echo(f"Deleted session {addr}.")


@sessions_group.command("touch")
@click.argument("session_id", metavar="SESSION")
@namespace_option
@store_option
def touch_command(*, session_id: str, namespace: str, store_url: str | None) -> None:
    """Mark a session as written now, so `purge --older-than` keeps it."""
    try:
        addr = session_addr(namespace, session_id)
    except StoreError as exc:
        raise click.ClickException(one_line(exc)) from None

    async def touch(store: AuthStore) -> bool:
        return await store.touch(session_id, namespace=namespace)

    if not run_with_store(store_url, touch):
        raise click.ClickException(f"no session {addr}")
    click.echo(f"Touched session {addr}.")
