"""SQLite tier, continued: key writes, fence tombstones, leases, metadata and listings.

Split from :mod:`.sqlite` to keep modules small; :class:`SQLiteKeysLeases` is a mixin of
:class:`~baileys_store.backends.sqlite.SQLiteDurable`, which supplies ``_read`` and ``_write``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from .._model import KeyWrite, SessionAddr, lease_token_of
from ..results import SessionInfo
from . import _sqlite_schema as q
from ._fences import check_fence

T = TypeVar("T")
ID_CHUNK = 500  # ids per IN (...) query; far below SQLite's variable limit
_ROWS = 200  # rows per multi-row upsert (measured fastest; larger statements cost more to prepare)
_PAGE = 500


def apply_writes(conn: sqlite3.Connection, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
    """Upserts and deletes (``blob=None``) of one write, inside the caller's transaction.

    In order, per type, a statement per run of up to ``_ROWS`` upserts or ``ID_CHUNK`` deletes:
    consecutive writes of one kind group, so a delete and a later re-write of an id keep
    their order.
    """
    head = (addr.namespace, addr.session_id)
    run: list[KeyWrite] = []
    for w in writes:
        if run and (
            w.type != run[0].type
            or (w.blob is None) != (run[0].blob is None)
            or len(run) >= (_ROWS if w.blob is not None else ID_CHUNK)
        ):
            _apply_run(conn, head, run)
            run = []
        run.append(w)
    if run:
        _apply_run(conn, head, run)


def _apply_run(conn: sqlite3.Connection, head: tuple[str, str], run: list[KeyWrite]) -> None:
    """Writes of one type and kind (all upserts or all deletes) as one statement."""
    if run[0].blob is None:
        marks = ",".join("?" * len(run))
        conn.execute(q.DELETE_KEYS.format(marks=marks), (*head, run[0].type, *(w.id for w in run)))
        return
    args: list[object] = [*head, run[0].type]
    for w in run:
        args += (w.id, w.blob)
    conn.execute(q.UPSERT_KEYS.format(rows=",".join(["(?,?)"] * len(run))), args)


def tombstone(conn: sqlite3.Connection, key: tuple[str, str]) -> int:
    """The fence of a session that has no row (0 if it never had one): see ``bs_fences``."""
    row = conn.execute(q.SELECT_TOMBSTONE, key).fetchone()
    return int(row[0]) if row else 0


def put_tombstone(conn: sqlite3.Connection, key: tuple[str, str], fence: int) -> None:
    """Keep ``fence`` for a session whose row is gone (the caller checked it is not lower)."""
    conn.execute(q.PUT_TOMBSTONE, (*key, fence))


def touch(conn: sqlite3.Connection, addr: SessionAddr, fence: int | None) -> int:
    """Fence check + session upsert inside the caller's transaction; returns the version.

    One read when the row exists (the hot path); a missing row is fenced by its tombstone,
    which the re-created row takes over in the same transaction.
    """
    key = (addr.namespace, addr.session_id)
    row = conn.execute(q.SELECT_SESSION, key).fetchone()
    current_fence = row[0] if row else tombstone(conn, key)
    new_fence = check_fence(addr, current_fence, fence)
    now = time.time()
    conn.execute(q.TOUCH_SESSION, (*key, new_fence, now, now))
    if row is None and current_fence:
        conn.execute(q.DROP_TOMBSTONE, key)
    return int(row[1]) if row else 0


class SQLiteKeysLeases:
    """Deletes, fences, leases, metadata and listings (a mixin: the host runs transactions)."""

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # supplied by SQLiteDurable

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # supplied by SQLiteDurable

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete the session row and its keys in one transaction; its fence stays (tombstone)."""
        key = (addr.namespace, addr.session_id)

        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute(q.SELECT_SESSION, key).fetchone()
            current = check_fence(addr, row[0] if row else tombstone(conn, key), fence)
            keys = conn.execute(q.CLEAR_KEYS, key).rowcount
            rows = conn.execute(q.DELETE_SESSION, key).rowcount
            if current:
                put_tombstone(conn, key, current)
            return bool(keys or rows)

        return await self._write(fn)

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        key = (addr.namespace, addr.session_id)

        def fn(conn: sqlite3.Connection) -> None:
            row = conn.execute(q.SELECT_SESSION, key).fetchone()
            if row is not None:
                conn.execute(q.SET_FENCE, (check_fence(addr, row[0], token), *key))
            else:  # no row to carry it (deleted, or not written yet): the tombstone does
                put_tombstone(conn, key, check_fence(addr, tombstone(conn, key), token))

        await self._write(fn)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if free, expired or ``owner``'s: a new, higher token."""
        key = (addr.namespace, addr.session_id)

        def fn(conn: sqlite3.Connection) -> int | None:
            now = time.time()
            row = conn.execute(q.SELECT_LEASE, key).fetchone()
            if row is not None and row[0] and row[0] != owner and row[2] > now:
                return None
            sess = conn.execute(q.SELECT_SESSION, key).fetchone()
            fence = lease_token_of(sess[0] if sess else tombstone(conn, key))
            token = max(row[1] if row else 0, fence, floor) + 1
            conn.execute(q.PUT_LEASE, (*key, owner, token, now + ttl_ms / 1000))
            return int(token)

        return await self._write(fn)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""

        def fn(conn: sqlite3.Connection) -> bool:
            now = time.time()
            args = (now + ttl_ms / 1000, addr.namespace, addr.session_id, owner, token, now)
            return conn.execute(q.RENEW_LEASE, args).rowcount == 1

        return await self._write(fn)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""

        def fn(conn: sqlite3.Connection) -> bool:
            args = (addr.namespace, addr.session_id, owner, token)
            return conn.execute(q.RELEASE_LEASE, args).rowcount == 1

        return await self._write(fn)

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` unless it is set (always with ``replace``); returns the stored value.

        In one write transaction (``BEGIN IMMEDIATE``), so binders in other processes agree.
        """

        def fn(conn: sqlite3.Connection) -> str:
            conn.execute(q.PUT_META if replace else q.INSERT_META, (name, value))
            return str(conn.execute(q.SELECT_META, (name,)).fetchone()[0])

        return await self._write(fn)

    async def _keyset(
        self, sql: str, params: Callable[[tuple[str, str]], tuple[Any, ...]], start: tuple[str, str]
    ) -> AsyncIterator[Any]:
        """Rows of ``sql`` by keyset pages of ``_PAGE``.

        Each page starts after the first two columns of the previous page's last row, so a long
        listing holds no read transaction open.
        """
        last = start
        while True:
            page = params(last)

            def fn(conn: sqlite3.Connection, p: tuple[Any, ...] = page) -> list[Any]:
                return conn.execute(sql, p).fetchall()

            rows = await self._read(fn)
            for row in rows:
                yield row
            if len(rows) < _PAGE:
                return
            last = (rows[-1][0], rows[-1][1])

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Sessions in (namespace, session_id) order, by keyset pages."""
        ns_filter = "AND namespace = ?" if namespace is not None else ""
        ns_param = (namespace,) if namespace is not None else ()
        rows = self._keyset(
            q.LIST_PAGE.format(ns_filter=ns_filter),
            lambda last: (*last, *ns_param, _PAGE),
            (namespace or "", ""),
        )
        async for ns, sid, version, updated in rows:
            yield SessionInfo(ns, sid, int(version), float(updated))

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order, by keyset pages (for export)."""
        rows = self._keyset(
            q.KEY_IDS_PAGE, lambda last: (addr.namespace, addr.session_id, *last, _PAGE), ("", "")
        )
        async for key_type, key_id in rows:
            yield str(key_type), str(key_id)

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregate query."""

        def fn(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(q.COUNT_KEYS, (addr.namespace, addr.session_id)).fetchall()
            return {str(t): int(n) for t, n in rows}

        return await self._read(fn)
