"""Group commit for the SQLite tier.

The writes waiting when the writer thread frees up run as one transaction, each in its own
savepoint; the reads waiting run in one hop to the reader thread.

Why: with ``synchronous=FULL`` every commit is an fsync (~0.3 ms here), and every call is a hop
to a thread and back. With many sessions writing at once, those two were most of a write's
cost. A grouped call stays atomic (its savepoint is rolled back alone when it raises) and is
acknowledged only after the COMMIT that makes it durable. A lone call pays what it paid before:
nothing waits for company, a group is whatever queued while the previous one ran.

Written here because the job is tiny and specific (aiosqlite hops per statement; no library
groups whole transactions).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .. import errors

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
_Outcome = tuple[bool, Any]  # (ok, result or exception)


def typed_error(exc: BaseException) -> BaseException:
    """SQLite's errors as the store's: an outage, or a closed store."""
    if isinstance(exc, sqlite3.Error):
        err = errors.UnavailableError(f"sqlite: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err
    if isinstance(exc, RuntimeError) and "shutdown" in str(exc):
        return errors.StoreClosedError("sqlite backend is closed")
    return exc


class Batcher:
    """Runs submitted jobs on one connection's thread, many per hop (see the module doc).

    Args:
        executor: The connection's single thread.
        conn: Returns the connection (read on that thread).
        transaction: Group the jobs in one ``BEGIN IMMEDIATE … COMMIT``, a savepoint each.
        limit: Most jobs per group.
    """

    __slots__ = ("_conn", "_ex", "_limit", "_queue", "_task", "_tx")

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        conn: Callable[[], sqlite3.Connection],
        *,
        transaction: bool,
        limit: int = 128,
    ) -> None:
        self._ex, self._conn, self._tx, self._limit = executor, conn, transaction, limit
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` with the next group; its result, or its error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, fut))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await fut

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
                # A caller cancelled before its group started: its job never runs.
                items = [(fn, fut) for fn, fut in head if not fut.done()]
                if not items:
                    continue
                jobs = [fn for fn, _ in items]
                try:
                    outcomes = await loop.run_in_executor(self._ex, self._run, jobs)
                except BaseException as exc:  # the group as a whole failed (BEGIN/COMMIT)
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(typed_error(_copy(exc)))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, fut), (ok, value) in zip(items, outcomes, strict=True):
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
        conn = self._conn()
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

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)``; raises :class:`MustWaitError` when the read would wait for a lock."""
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise MustWaitError from None
            raise typed_error(exc) from None
        except sqlite3.Error as exc:
            raise typed_error(exc) from None

    def close(self) -> None:
        """Close the connection (the backend drops this reader first)."""
        self._conn.close()


def _call(job: Job, conn: sqlite3.Connection) -> _Outcome:
    try:
        return True, job(conn)
    except Exception as exc:  # the job's own error goes to its caller alone
        return False, exc


def _copy(exc: BaseException) -> BaseException:
    """One exception object per waiting caller (a shared one would pile up tracebacks)."""
    if isinstance(exc, sqlite3.Error):
        return type(exc)(*exc.args)
    if isinstance(exc, asyncio.CancelledError):
        return errors.UnavailableError("sqlite: the write group was cancelled (store closing)")
    return exc
