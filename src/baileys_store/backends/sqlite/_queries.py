"""Reads of the SQLite tier: key and creds lookups, counts, keyset listings, inline reads.

The lookups are plain functions of a connection, run by ``SQLiteDurable._read`` on the reader
thread or, when small, inline on the event loop (:class:`InlineReader`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from ... import errors
from ..._model import CredsRecord, SessionAddr
from ...results import SessionInfo, TierHealth
from . import _schema as q
from ._files import typed_error

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Reads of up to this many ids run inline on the event loop (see InlineReader): a 64-id read
# (a group's devices) is well under 0.1 ms of SQLite; larger ones stay on the reader thread.
INLINE_IDS = 64
_PAGE = 500  # rows per keyset page of a listing


def get_keys(
    conn: sqlite3.Connection, addr: SessionAddr, key_type: str, ids: Sequence[str]
) -> dict[str, bytes]:
    """Blobs of the ids found, one query per chunk of ``ID_CHUNK`` ids."""
    out: dict[str, bytes] = {}
    for start in range(0, len(ids), q.ID_CHUNK):
        chunk = ids[start : start + q.ID_CHUNK]
        sql = q.GET_KEYS.format(marks=",".join("?" * len(chunk)))
        cur = conn.execute(sql, (addr.namespace, addr.session_id, key_type, *chunk))
        out.update((i, bytes(v)) for i, v in cur)
    return out


def load_creds(conn: sqlite3.Connection, addr: SessionAddr) -> CredsRecord | None:
    """The creds row, if any."""
    row = conn.execute(q.LOAD_CREDS, (addr.namespace, addr.session_id)).fetchone()
    return CredsRecord(bytes(row[0]), int(row[1])) if row else None


def count_keys(conn: sqlite3.Connection, addr: SessionAddr) -> dict[str, int]:
    """``{type: count}`` of the session's keys, one aggregate query."""
    rows = conn.execute(q.COUNT_KEYS, (addr.namespace, addr.session_id)).fetchall()
    return {str(t): int(n) for t, n in rows}


def fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Every row of ``sql``."""
    return conn.execute(sql, params).fetchall()


# Runs ``fetch_all`` on a read connection: ``SQLiteDurable._read``.
Read = Callable[
    [Callable[[sqlite3.Connection, str, tuple[Any, ...]], list[Any]], str, tuple[Any, ...]],
    Awaitable[list[Any]],
]


async def _keyset(
    read: Read,
    sql: str,
    params: Callable[[tuple[str, str]], tuple[Any, ...]],
    start: tuple[str, str],
) -> AsyncIterator[Any]:
    """Rows of ``sql`` by keyset pages of ``_PAGE``.

    Each page starts after the first two columns of the previous page's last row, so a long
    listing holds no read transaction open.
    """
    last = start
    while True:
        rows = await read(fetch_all, sql, params(last))
        for row in rows:
            yield row
        if len(rows) < _PAGE:
            return
        last = (rows[-1][0], rows[-1][1])


async def list_sessions(read: Read, namespace: str | None) -> AsyncIterator[SessionInfo]:
    """Sessions in (namespace, session_id) order, by keyset pages."""
    ns_filter = "AND namespace = ?" if namespace is not None else ""
    ns_param = (namespace,) if namespace is not None else ()
    rows = _keyset(
        read,
        q.LIST_PAGE.format(ns_filter=ns_filter),
        lambda last: (*last, *ns_param, _PAGE),
        (namespace or "", ""),
    )
    async for ns, sid, version, updated in rows:
        yield SessionInfo(ns, sid, int(version), float(updated))


async def iter_key_ids(read: Read, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
    """Every ``(type, id)`` of the session in order, by keyset pages (for export)."""
    rows = _keyset(
        read, q.KEY_IDS_PAGE, lambda last: (addr.namespace, addr.session_id, *last, _PAGE), ("", "")
    )
    async for key_type, key_id in rows:
        yield str(key_type), str(key_id)


async def check(read: Read, path: Path) -> TierHealth:
    """``SELECT 1`` through ``read``: the health of the tier."""
    start = time.perf_counter()
    try:
        await read(fetch_all, "SELECT 1", ())
    except errors.StoreError as exc:
        return TierHealth("sqlite", "durable", False, 0.0, type(exc).__name__)
    ms = (time.perf_counter() - start) * 1000
    return TierHealth("sqlite", "durable", True, ms, os.fspath(path.name))


class MustWaitError(Exception):
    """An inline read SQLite would have made wait for a lock: run it on the reader thread."""


class InlineReader:
    """Small reads on the event loop's own thread, on a connection used by nothing else.

    Why: a point read in SQLite takes ~15 µs, while the hop to the reader thread and back took
    ~0.1-0.15 ms on two busy cores, most of a single-key ``get``. The loop is never held by a
    lock: the connection does not wait (``busy_timeout`` 0), and a read SQLite would make wait
    (``SQLITE_BUSY``/``LOCKED``: another connection is resetting or recovering the WAL) is
    handed back, for the reader thread, which may wait. WAL readers otherwise never wait for
    the writer. Callers send only small reads here: a large one would hold the loop for
    milliseconds. Nor while the writer thread is busy: its every statement needs the GIL back,
    and a loop kept busy by inline reads would hand it over only every switch interval (5 ms),
    stalling writes (measured: the concurrency contract test went from seconds to minutes).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        """``fn(conn, *args)``; raises :class:`MustWaitError` when it would wait for a lock."""
        try:
            return fn(self._conn, *args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise MustWaitError from None
            raise typed_error(exc) from None
        except sqlite3.Error as exc:
            raise typed_error(exc) from None
