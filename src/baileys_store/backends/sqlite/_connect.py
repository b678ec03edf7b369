"""Opening and closing one SQLite file: its lock, its three connections and two threads.

Why not aiosqlite: it hops to its thread once per *statement*, so a task cancelled between
``BEGIN`` and ``COMMIT`` leaves a transaction open on the shared connection. Here each whole
transaction is one function run on a dedicated writer thread: it runs to completion (or rolls
back) whatever happens to the awaiting task, and costs one thread hop instead of four. Reads use
a second connection on its own thread; WAL lets them run beside the writer. A third connection
serves small reads on the event loop's own thread (see ``_queries.InlineReader``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from ... import errors
from ._files import lock_file, open_error, prepare_db_file
from ._schema import init_schema, store_id
from ._url import sqlite_uri

T = TypeVar("T")
_Pair = tuple[ThreadPoolExecutor, sqlite3.Connection]


class Connections:
    """The open handles of one database file.

    Attributes:
        wx: The writer's thread; ``writer`` is used on it alone.
        rx: The reader's thread; ``reader`` is used on it alone.
        inline: The connection of the event loop's thread (``busy_timeout`` 0).
        store_id: The database's id (see ``DurableBackend.store_id``).
    """

    __slots__ = ("inline", "lockfile", "reader", "rx", "store_id", "writer", "wx")

    def __init__(
        self,
        writer: _Pair,
        reader: _Pair,
        inline: sqlite3.Connection,
        lockfile: IO[bytes],
        sid: str,
    ) -> None:
        (self.wx, self.writer), (self.rx, self.reader) = writer, reader
        self.inline, self.lockfile, self.store_id = inline, lockfile, sid

    async def close(self) -> None:
        """Close the connections (each on its thread), stop the threads, drop the lock."""
        self.inline.close()
        await _shut(((self.wx, self.writer), (self.rx, self.reader)), self.lockfile)


async def run(ex: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
    """``fn()`` on ``ex``'s thread, SQLite's errors as an outage."""
    try:
        return await asyncio.get_running_loop().run_in_executor(ex, fn)
    except sqlite3.Error as exc:
        raise errors.UnavailableError(f"sqlite: {type(exc).__name__}: {exc}") from exc


async def open_connections(
    path: Path, *, synchronous: str, exclusive: bool, create: bool, create_dirs: bool
) -> Connections:
    """Prepare the file, take its lock, create or migrate the schema, open every connection.

    A failed open keeps nothing (no lock, no connection, no thread): a retry has to work.
    """
    wx = ThreadPoolExecutor(1, thread_name_prefix="baileys-store-sqlite-w")
    rx = ThreadPoolExecutor(1, thread_name_prefix="baileys-store-sqlite-r")
    opened = partial(_open_sync, path, synchronous, exclusive, create, create_dirs)
    try:
        w, r, lockfile, sid = await run(wx, opened)
    except BaseException:
        for ex in (wx, rx):
            ex.shutdown(wait=False)
        raise
    # Opened here, on the loop's thread, once the schema exists: only this thread uses it.
    try:
        inline = sqlite3.connect(sqlite_uri(path), isolation_level=None, timeout=0, uri=True)
        inline.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error as exc:  # the file went away since the schema step: not open
        await _shut(((wx, w), (rx, r)), lockfile)
        raise open_error(path, exc) from exc
    return Connections((wx, w), (rx, r), inline, lockfile, sid)


async def _shut(pairs: tuple[_Pair, ...], lockfile: IO[bytes]) -> None:
    for ex, conn in pairs:
        await run(ex, conn.close)
        await asyncio.to_thread(ex.shutdown, True)
    lockfile.close()


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        sqlite_uri(path), isolation_level=None, check_same_thread=False, timeout=30, uri=True
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _open_sync(
    path: Path, synchronous: str, exclusive: bool, create: bool, create_dirs: bool
) -> tuple[sqlite3.Connection, sqlite3.Connection, IO[bytes], str]:
    """On the writer's thread: the file, its lock, the writer (schema first), the reader."""
    prepare_db_file(path, create=create, create_dirs=create_dirs)
    lockfile = lock_file(path, exclusive=exclusive)
    w: sqlite3.Connection | None = None
    try:
        w = _connect(path, synchronous)
        init_schema(w)
        sid = store_id(w)
        return w, _connect(path, synchronous), lockfile, sid
    except sqlite3.Error as exc:
        _release(w, lockfile)
        raise open_error(path, exc) from exc
    except BaseException:
        _release(w, lockfile)
        raise


def _release(w: sqlite3.Connection | None, lockfile: IO[bytes]) -> None:
    if w is not None:
        w.close()
    lockfile.close()
