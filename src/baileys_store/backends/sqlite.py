"""The embedded default: one SQLite file in WAL mode.

Why not aiosqlite: it hops to its thread once per *statement*, so a task cancelled between
``BEGIN`` and ``COMMIT`` leaves a transaction open on the shared connection. Here each whole
transaction is one function run on a dedicated writer thread: it runs to completion (or rolls
back) whatever happens to the awaiting task, and costs one thread hop instead of four. Reads use
a second connection on its own thread; WAL lets them run beside the writer. Concurrent calls are
grouped: one commit (one fsync) and one hop for every write waiting (:mod:`._sqlite_batch`).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TypeVar

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..results import TierHealth
from . import _sqlite_schema as q
from ._fences import check_version
from ._sqlite_batch import Batcher, InlineReader, MustWaitError
from ._sqlite_files import open_error, open_lock_file, prepare_db_file, sqlite_path, sqlite_uri
from ._sqlite_more import ID_CHUNK, SQLiteKeysLeases, apply_writes, touch

T = TypeVar("T")

# Reads of up to this many ids run inline on the event loop (see InlineReader): a 64-id read
# (a group's devices) is well under 0.1 ms of SQLite; larger ones stay on the reader thread.
INLINE_IDS = 64


class SQLiteDurable(SQLiteKeysLeases):
    """Durable tier in one SQLite file.

    Args:
        path: Database file, created 0600 when missing (its ``-wal``, ``-shm`` and ``.lock``
            too; see :mod:`._sqlite_files`).
        synchronous: ``full`` fsyncs every commit; ``normal`` may lose the last commits on power
            loss (never corrupts the file).
        exclusive: Hold an exclusive advisory lock on ``<path>.lock`` so no other store can
            open the file while this one keeps an in-process cache in front of it (it would
            read stale). Non-exclusive stores hold a shared lock, so they open beside each
            other but never beside an exclusive one.
        create: Create the file when missing; ``False`` (read-only commands) makes a missing
            file a ConfigError at open. Also settable as the ``create`` attribute before open.
        create_dirs: Create a missing parent folder (0700); otherwise it is a ConfigError.
    """

    name = "sqlite"
    # A cancelled call returns at once (its job runs or is dropped on the writer thread), so the
    # store's guard cancels it in place instead of abandoning it to a background task.
    cancels_promptly = True

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "full",
        exclusive: bool = False,
        create: bool = True,
        create_dirs: bool = False,
    ) -> None:
        self._path = path
        self.create, self.create_dirs = create, create_dirs
        self._sync = synchronous.upper()
        self._exclusive = exclusive
        self._lockfile: IO[bytes] | None = None
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._wx: ThreadPoolExecutor | None = None
        self._rx: ThreadPoolExecutor | None = None
        self._wb: Batcher | None = None
        self._rb: Batcher | None = None
        self._inline: InlineReader | None = None
        self.store_id = ""  # known once open (see base.DurableBackend)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            sqlite_uri(self._path),
            isolation_level=None,
            check_same_thread=False,
            timeout=30,
            uri=True,
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute(f"PRAGMA synchronous = {self._sync}")
        return conn

    def _lock(self) -> IO[bytes]:
        lock = open_lock_file(self._path)
        mode = fcntl.LOCK_EX if self._exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(lock.fileno(), mode | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise errors.UnavailableError(
                f"{self._path.name} is open elsewhere and one side keeps an in-process cache; "
                "use cache=none everywhere to share one SQLite file between stores"
            ) from None
        return lock

    def _open_sync(self) -> None:
        prepare_db_file(self._path, create=self.create, create_dirs=self.create_dirs)
        self._lockfile = self._lock()
        w: sqlite3.Connection | None = None
        try:
            w = self._connect()
            q.init_schema(w)
            # Who this database is, so a Redis cache can refuse a second database (store_id).
            w.execute(
                "INSERT OR IGNORE INTO bs_meta (name, value) VALUES ('store_id', ?)",
                (secrets.token_hex(8),),
            )
            self.store_id = str(
                w.execute("SELECT value FROM bs_meta WHERE name = 'store_id'").fetchone()[0]
            )
            self._w, self._r = w, self._connect()
        except sqlite3.Error as exc:
            self._release(w)
            raise open_error(self._path, exc) from exc
        except BaseException:
            self._release(w)
            raise

    def _release(self, w: sqlite3.Connection | None) -> None:
        """A failed open must not keep the lock (or a connection): a retry has to work."""
        if w is not None:
            w.close()
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    async def open(self) -> None:
        """Open both connections, enable WAL and create the schema."""
        self._wx = ThreadPoolExecutor(1, thread_name_prefix="baileys-store-sqlite-w")
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="baileys-store-sqlite-r")
        try:
            await self._run(self._wx, self._open_sync)
        except BaseException:
            for ex in (self._wx, self._rx):
                ex.shutdown(wait=False)
            self._wx = self._rx = None
            raise
        self._wb = Batcher(self._wx, self._writer, transaction=True)
        self._rb = Batcher(self._rx, self._reader, transaction=False)
        # Opened here, on the loop's thread, once the schema exists: only this thread uses it.
        try:
            inline = sqlite3.connect(
                sqlite_uri(self._path), isolation_level=None, timeout=0, uri=True
            )
            inline.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:  # the file went away since the schema step: not open
            await self.close()
            raise open_error(self._path, exc) from exc
        self._inline = InlineReader(inline)

    async def close(self) -> None:
        """Close connections and stop the threads; idempotent."""
        batchers, self._wb, self._rb = (self._wb, self._rb), None, None
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        for batcher in batchers:
            if batcher is not None:
                await batcher.idle()  # what was submitted runs before the connections close
        for ex, conn in ((self._wx, self._w), (self._rx, self._r)):
            if ex is not None:
                if conn is not None:
                    await self._run(ex, conn.close)
                await asyncio.to_thread(ex.shutdown, True)
        self._wx = self._rx = None
        self._w = self._r = None
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    async def _run(self, ex: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if ex is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(ex, fn)
        except sqlite3.Error as exc:
            raise errors.UnavailableError(f"sqlite: {type(exc).__name__}: {exc}") from exc

    def _writer(self) -> sqlite3.Connection:
        assert self._w is not None
        return self._w

    def _reader(self) -> sqlite3.Connection:
        assert self._r is not None
        return self._r

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction (grouped with the writes waiting beside it)."""
        if self._wb is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        return await self._wb.submit(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], *, small: bool = False) -> T:
        """``fn`` on a read connection; a ``small`` one inline unless it or a write waits."""
        if self._rb is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        if small and self._inline is not None and not (self._wb is not None and self._wb.busy):
            try:
                return self._inline.run(fn)
            except MustWaitError:
                pass  # the reader thread may wait for the lock; the loop must not
        return await self._rb.submit(fn)

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One query per chunk of 500 ids."""

        def fn(conn: sqlite3.Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for start in range(0, len(ids), ID_CHUNK):
                chunk = ids[start : start + ID_CHUNK]
                sql = q.GET_KEYS.format(marks=",".join("?" * len(chunk)))
                cur = conn.execute(sql, (addr.namespace, addr.session_id, key_type, *chunk))
                out.update((i, bytes(v)) for i, v in cur)
            return out

        return await self._read(fn, small=len(ids) <= INLINE_IDS) if ids else {}

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """All writes in one transaction."""

        def fn(conn: sqlite3.Connection) -> None:
            touch(conn, addr, fence)
            apply_writes(conn, addr, writes)

        await self._write(fn)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Delete every key row of the session."""

        def fn(conn: sqlite3.Connection) -> int:
            touch(conn, addr, fence)
            return conn.execute(q.CLEAR_KEYS, (addr.namespace, addr.session_id)).rowcount

        return await self._write(fn)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds row, if any."""

        def fn(conn: sqlite3.Connection) -> CredsRecord | None:
            row = conn.execute(q.LOAD_CREDS, (addr.namespace, addr.session_id)).fetchone()
            return CredsRecord(bytes(row[0]), int(row[1])) if row else None

        return await self._read(fn, small=True)

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set inside one write transaction."""

        def fn(conn: sqlite3.Connection) -> int:
            version = check_version(addr, touch(conn, addr, fence), expected_version)
            conn.execute(q.SAVE_CREDS, (blob, version, addr.namespace, addr.session_id))
            return version

        return await self._write(fn)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """Apply an outbox batch in one transaction unless its sequence was applied already."""
        ns, sid = addr.namespace, addr.session_id

        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute(q.SELECT_SEQ, (ns, sid)).fetchone()
            if row is not None and int(row[0]) >= seq:
                return False
            touch(conn, addr, fence)
            apply_writes(conn, addr, writes)
            if creds is not None:
                conn.execute(q.SAVE_CREDS, (creds.blob, creds.version, ns, sid))
            conn.execute(q.SET_SEQ, (seq, ns, sid))
            return True

        return await self._write(fn)

    async def check(self) -> TierHealth:
        """``SELECT 1`` on the read connection."""
        start = time.perf_counter()
        try:
            await self._read(lambda c: c.execute("SELECT 1").fetchone())
        except errors.StoreError as exc:
            return TierHealth(self.name, "durable", False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        return TierHealth(self.name, "durable", True, ms, os.fspath(self._path.name))


__all__ = ["SQLiteDurable", "sqlite_path"]
