"""``baileys-store sessions list|inspect|delete|touch``, and the plumbing of one-shot commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
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


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


@click.group("sessions")
def sessions_group() -> None:
    """List, inspect, touch and delete stored sessions."""


@sessions_group.command("list")
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@store_option
def list_command(*, namespace: str | None, store_url: str | None) -> None:
    """List sessions with their creds version and last write."""

    async def fetch(store: AuthStore) -> list[SessionInfo]:
        return [info async for info in store.list_sessions(namespace)]

    infos = run_with_store(store_url, fetch)
    out = Console(highlight=False, soft_wrap=True, markup=False)
    if not infos:
        out.print("No sessions" + (f" in namespace {namespace}." if namespace else "."))
        return
    table = Table("Namespace", "Session", "Creds version", "Last write")
    table.columns[0].overflow = table.columns[1].overflow = "fold"
    for info in infos:
        version, when = str(info.creds_version), _when(info.updated_at)
        table.add_row(info.namespace, info.session_id, version, when)
    out.print(table)
    out.print(f"{len(infos)} session(s)")


def _pick(creds: Mapping[str, Any], *names: str) -> Any:
    return next((creds[n] for n in names if n in creds), None)


def _creds_rows(creds: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Non-secret facts about creds: flavour, pairing state, account JID, pre-key counter."""
    flavour = "node (camelCase)" if "noiseKey" in creds else "pyaileys (snake_case)"
    me = _pick(creds, "me")
    me_id = me.get("id") if isinstance(me, Mapping) else None
    return [
        ("creds flavour", flavour if {"noiseKey", "noise_key"} & creds.keys() else "unknown"),
        ("registered", str(bool(_pick(creds, "registered")))),
        ("account", str(me_id) if me_id else "- (not paired)"),
        ("next pre-key id", str(_pick(creds, "nextPreKeyId", "next_pre_key_id"))),
    ]


@sessions_group.command("inspect")
@click.argument("session_id", metavar="SESSION")
@namespace_option
@store_option
def inspect_command(*, session_id: str, namespace: str, store_url: str | None) -> None:
    """Show a session's creds version, account and key counts per type (no key material)."""

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
    out = Console(highlight=False, soft_wrap=True, markup=False)
    info = Table("Session", f"{namespace}/{session_id}", show_header=True)
    info.add_row("creds version", str(version) if version else "0 (no creds)")
    for row in _creds_rows(creds) if creds else []:
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
