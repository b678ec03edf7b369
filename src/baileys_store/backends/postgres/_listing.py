"""PostgreSQL: list sessions and a session's keys (export, rotation, inspect), and the metadata.

Plain functions of a :class:`~._run.PgRunner`. Listings use keyset pagination: one short query
per page, no cursor held open between pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ... import errors
from ..._model import SessionAddr
from ...results import SessionInfo
from . import _schema as q
from ._run import Attempts, Conn, PgRunner, as_int, as_text

_SESSIONS_PAGE = 500
_KEYS_PAGE = 1000


async def list_sessions(run: PgRunner, namespace: str | None) -> AsyncIterator[SessionInfo]:
    """Every live session (of one namespace, or all), in (namespace, session_id) order."""
    last = (namespace or "", "")
    while True:
        args: tuple[Any, ...]
        if namespace is None:
            query, args = run.sql.list_all, (*last, _SESSIONS_PAGE)
        else:
            query, args = run.sql.list_namespace, (*last, namespace, _SESSIONS_PAGE)

        async def fn(conn: Conn, _: Attempts, qq: Any = query, p: Any = args) -> Any:
            return await (await conn.execute(qq, p)).fetchall()

        rows: list[tuple[Any, ...]] = await run.run(fn)
        for ns, sid, version, updated in rows:
            yield SessionInfo(as_text(ns), as_text(sid), as_int(version), float(updated))
        if len(rows) < _SESSIONS_PAGE:
            return
        last = (rows[-1][0], rows[-1][1])


async def iter_key_ids(run: PgRunner, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
    """Every ``(type, id)`` of the session in order."""
    last = ("", "")
    while True:
        args = (addr.namespace, addr.session_id, *last, _KEYS_PAGE)

        async def fn(conn: Conn, _: Attempts, p: tuple[Any, ...] = args) -> list[Any]:
            cur = await conn.execute(run.sql.key_ids_page, p)
            return await cur.fetchall()

        rows = await run.run(fn, addr)
        for key_type, key_id in rows:
            yield str(key_type), str(key_id)
        if len(rows) < _KEYS_PAGE:
            return
        last = (str(rows[-1][0]), str(rows[-1][1]))


async def count_keys(run: PgRunner, addr: SessionAddr) -> dict[str, int]:
    """``{type: count}`` of the session's keys, one aggregate query."""

    async def fn(conn: Conn, _: Attempts) -> list[Any]:
        cur = await conn.execute(run.sql.count_keys, (addr.namespace, addr.session_id))
        return await cur.fetchall()

    return {str(t): int(n) for t, n in await run.run(fn, addr)}


async def bind_meta(run: PgRunner, name: str, value: str, replace: bool) -> str:
    """Set ``name`` in the meta table unless set (always with ``replace``); one statement.

    Raises:
        InvalidInputError: ``name`` is one the backend keeps itself (``schema_version``,
            ``store_id``).
    """
    if name in q.RESERVED_META:
        raise errors.InvalidInputError(f"meta name {name!r} is reserved by the backend")
    args = {"name": name, "value": value, "replace": replace}

    async def fn(conn: Conn, _: Attempts) -> Any:
        return await (await conn.execute(run.sql.bind_meta, args)).fetchone()

    row = await run.run(fn)
    if row is None or not isinstance(row[0], str):
        raise errors.CorruptDataError(f"postgres: meta {name!r} did not read back as text")
    return row[0]
