"""The SQLite backend and its write path: group commit on the writer thread.

The writes waiting when the writer thread frees up run as one transaction, each in its own
savepoint; the reads waiting run in one hop to the reader thread. Why: with
``synchronous=FULL`` every commit is an fsync (~0.3 ms here), and every call is a hop to a
thread and back: with many sessions writing at once, those two were most of a write's cost. A
grouped call stays atomic (its savepoint is rolled back alone when it raises) and is
acknowledged only after the COMMIT that makes it durable; a lone call waits for no company.
The backend lives beside the batcher: one ``keys.set()`` runs in this module alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import DurableBackend, LeaseBackend
from ...results import SessionInfo, TierHealth
from . import _keys, _leases, _queries
from ._connect import Connections, open_connections
from ._files import fail_group, typed_error
from ._queries import INLINE_IDS, InlineReader, MustWaitError
from ._schema import bind_meta

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Job = tuple[Callable[..., Any], tuple[Any, ...]]  # fn(conn, *args)
_Outcome = tuple[bool, Any]  # (ok, result or exception)


class Batcher:
    """Runs submitted jobs on one connection's thread, many per hop (see the module doc).

    Args:
        executor: The connection's single thread.
        conn: The connection (used on that thread only).
        transaction: Group the jobs in one ``BEGIN IMMEDIATE … COMMIT``, a savepoint each.
        limit: Most jobs per group.
    """

    __slots__ = ("_conn", "_ex", "_limit", "_queue", "_task", "_tx")

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        conn: sqlite3.Connection,
        *,
        transaction: bool,
        limit: int = 128,
    ) -> None:
        self._ex, self._conn, self._tx, self._limit = executor, conn, transaction, limit
        self._queue: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> asyncio.Future[T]:
        """Queue ``fn(conn, *args)``: its future (a plain function, so no frame is awaited)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, args, fut))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return fut

    @property
    def busy(self) -> bool:
        """Jobs are queued or running on the thread."""
        return self._task is not None

    async def idle(self) -> None:
        """Wait until every submitted job has run."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                head, self._queue = self._queue[: self._limit], self._queue[self._limit :]
                # Loops, not comprehensions: each comprehension is a Python call of its own.
                jobs: list[Job] = []
                futs: list[asyncio.Future[Any]] = []
                for fn, args, fut in head:
                    if not fut.done():  # a caller cancelled before its group started: never runs
                        jobs.append((fn, args))
                        futs.append(fut)
                if not jobs:
                    continue
                try:
                    outcomes = await loop.run_in_executor(self._ex, self._run, jobs)
                except BaseException as exc:  # the group as a whole failed (BEGIN/COMMIT)
                    fail_group(futs, exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for fut, (ok, value) in zip(futs, outcomes, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(typed_error(value))
        finally:
            self._task = None

    def _run(self, jobs: list[Job]) -> list[_Outcome]:
        """On the connection's thread: every job, in order."""
        conn = self._conn
        if not self._tx:
            return [_call(job, conn) for job in jobs]
        out: list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                outcome = _call(job, conn)
                if not outcome[0]:
                    conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                out.append(outcome)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out


def _call(job: Job, conn: sqlite3.Connection) -> _Outcome:
    try:
        return True, job[0](conn, *job[1])
    except Exception as exc:  # the job's own error goes to its caller alone
        return False, exc


class SQLiteDurable(DurableBackend, LeaseBackend):
    """Durable tier in one SQLite file, in WAL mode.

    Its transactions are plain functions of a connection (``_keys``, ``_leases``, ``_queries``,
    ``_schema``), run by two batchers (:class:`Batcher`: writer, reader) and an inline reader.

    Args:
        path: Database file, created 0600 when missing (its ``-wal``, ``-shm`` and ``.lock``
            too; see :mod:`._files`).
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
        self._conns: Connections | None = None
        self._wb: Batcher | None = None
        self._rb: Batcher | None = None
        self._inline: InlineReader | None = None
        self.store_id = ""  # known once open (see DurableBackend)

    async def open(self) -> None:
        """Open the connections, enable WAL and create or migrate the schema."""
        conns = await open_connections(
            self._path,
            synchronous=self._sync,
            exclusive=self._exclusive,
            create=self.create,
            create_dirs=self.create_dirs,
        )
        self._conns, self.store_id = conns, conns.store_id
        self._wb = Batcher(conns.wx, conns.writer, transaction=True)
        self._rb = Batcher(conns.rx, conns.reader, transaction=False)
        self._inline = InlineReader(conns.inline)

    async def close(self) -> None:
        """Close connections and stop the threads; idempotent."""
        conns, batchers = self._conns, (self._wb, self._rb)
        self._conns = self._wb = self._rb = self._inline = None
        for batcher in batchers:
            if batcher is not None:
                await batcher.idle()  # what was submitted runs before the connections close
        if conns is not None:
            await conns.close()

    def _write(self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> asyncio.Future[T]:
        """``fn(conn, *args)`` in a write transaction (grouped with the writes beside it)."""
        if self._wb is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        return self._wb.submit(fn, *args)

    async def _read(
        self, fn: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts, small: bool = False
    ) -> T:
        """``fn(conn, *args)`` on a read connection; a ``small`` one inline unless a write waits."""
        if self._rb is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        if small and self._inline is not None and not (self._wb is not None and self._wb.busy):
            try:
                return self._inline.run(fn, *args)
            except MustWaitError:
                pass  # the reader thread may wait for the lock; the loop must not
        return await self._rb.submit(fn, *args)

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """All writes in one transaction."""
        # The hot path: straight to the batcher (no ``_write`` hop), one call before the commit.
        wb = self._wb
        if wb is None:
            raise errors.StoreClosedError("sqlite backend is not open")
        await wb.submit(_keys.write_keys, addr, writes, fence)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Delete every key row of the session."""
        return await self._write(_keys.clear_keys, addr, fence)

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set inside one write transaction."""
        return await self._write(_keys.save_creds, addr, blob, expected_version, fence)

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
        return await self._write(
            partial(_keys.apply_batch, seq=seq, fence=fence), addr, writes, creds
        )

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete the session row and its keys in one transaction; its fence stays (tombstone)."""
        return await self._write(_leases.delete_session, addr, fence)

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        await self._write(_leases.advance_fence, addr, token)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if free, expired or ``owner``'s: a new, higher token."""
        return await self._write(_leases.acquire, addr, owner, ttl_ms, floor)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
        return await self._write(_leases.renew, addr, owner, token, ttl_ms)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        return await self._write(_leases.release, addr, owner, token)

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` unless it is set (always with ``replace``); returns the stored value."""
        return await self._write(bind_meta, name, value, replace)

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One query per chunk of 500 ids; up to ``INLINE_IDS`` ids inline."""
        if not ids:
            return {}
        return await self._read(
            _queries.get_keys, addr, key_type, ids, small=len(ids) <= INLINE_IDS
        )

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds row, if any."""
        return await self._read(_queries.load_creds, addr, small=True)

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregate query."""
        return await self._read(_queries.count_keys, addr)

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Sessions in (namespace, session_id) order, by keyset pages."""
        return _queries.list_sessions(self._read, namespace)

    def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order, by keyset pages (for export)."""
        return _queries.iter_key_ids(self._read, addr)

    async def check(self) -> TierHealth:
        """``SELECT 1`` on the read connection."""
        return await _queries.check(self._read, self._path)
