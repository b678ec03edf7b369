"""On a real SQLite file: group commit (grouped calls stay atomic one by one and are durable),
and small reads inline on the event loop (falling back to the reader thread, never to "not found").
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from baileys_store import errors
from baileys_store._model import CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.backends.sqlite._queries import INLINE_IDS
from baileys_store.backends.sqlite._writer import Batcher, Job

ADDR = SessionAddr("ns", "s1")


class Counting(Batcher):
    """Counts the hops to the thread (one per group)."""

    hops = 0

    def _run(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        type(self).hops += 1
        return super()._run(jobs)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[Batcher, sqlite3.Connection]]:
    ex = ThreadPoolExecutor(1)
    conn = sqlite3.connect(tmp_path / "b.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    Counting.hops = 0
    batcher = Counting(ex, conn, transaction=True)
    yield batcher, conn
    await batcher.idle()
    conn.close()
    ex.shutdown()


def _insert(k: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?, 1)", (k,))
        conn.execute("INSERT INTO t VALUES (?, 2)", (k + "-twin",))
        if fail:
            raise errors.FencedError("stale writer", token=1, current=2)
        return k

    return job


async def test_a_failing_call_rolls_back_alone_and_the_group_commits(
    db: tuple[Batcher, sqlite3.Connection],
) -> None:
    batcher, conn = db
    calls = [batcher.submit(_insert(f"k{i}", fail=i == 3)) for i in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], errors.FencedError)
    assert [r for i, r in enumerate(results) if i != 3] == [f"k{i}" for i in range(20) if i != 3]
    rows = {k for (k,) in conn.execute("SELECT k FROM t")}
    assert "k3" not in rows  # both statements of the call undone
    assert "k3-twin" not in rows
    assert len(rows) == 38
    assert Counting.hops < 20  # grouped: fewer hops (and commits) than calls
    assert not conn.in_transaction


async def test_sqlite_errors_become_unavailable_and_others_go_on(
    db: tuple[Batcher, sqlite3.Connection],
) -> None:
    batcher, conn = db
    dup = batcher.submit(_insert("same"))
    again = batcher.submit(_insert("same"))
    ok, err = await asyncio.gather(dup, again, return_exceptions=True)
    assert ok == "same"
    assert isinstance(err, errors.UnavailableError)
    assert "IntegrityError" in str(err)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


async def test_a_call_cancelled_before_its_group_never_runs(
    db: tuple[Batcher, sqlite3.Connection],
) -> None:
    batcher, conn = db
    first = asyncio.ensure_future(batcher.submit(_insert("a")))
    await asyncio.sleep(0)  # the first group is on the thread now
    second = asyncio.ensure_future(batcher.submit(_insert("b")))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == "a"
    with pytest.raises(asyncio.CancelledError):
        await second
    await batcher.idle()
    assert {k for (k,) in conn.execute("SELECT k FROM t")} == {"a", "a-twin"}


# -- small reads inline on the event loop -------------------------------------------------------


class _Failing:
    """Stands in for the inline connection: every statement fails with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.calls = 0

    def execute(self, *args: object) -> None:
        self.calls += 1
        exc = sqlite3.OperationalError("injected")
        exc.sqlite_errorcode = self.code  # what the sqlite3 module sets on a real error
        raise exc


@pytest.fixture
async def durable(tmp_path: Path) -> AsyncIterator[SQLiteDurable]:
    store = SQLiteDurable(tmp_path / "s.db", synchronous="normal")
    await store.open()
    await store.write_keys(ADDR, [KeyWrite("session", str(i), b"v%d" % i) for i in range(100)])
    await store.save_creds(ADDR, b"creds")
    yield store
    await store.close()


class _CountingReader:
    """Wraps the reader thread's batcher, counting the reads sent to it."""

    def __init__(self, inner: Batcher) -> None:
        self.inner = inner
        self.hops: list[int] = []

    async def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.hops.append(1)
        return await self.inner.submit(fn, *args)

    async def idle(self) -> None:
        await self.inner.idle()


def _no_hops(durable: SQLiteDurable, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads sent to the reader thread."""
    assert durable._rb is not None
    counting = _CountingReader(durable._rb)
    monkeypatch.setattr(durable, "_rb", counting)
    return counting.hops


async def test_small_reads_run_inline_and_large_ones_on_the_reader_thread(
    durable: SQLiteDurable, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = _no_hops(durable, monkeypatch)
    assert await durable.get_keys(ADDR, "session", ["1", "2", "x"]) == {"1": b"v1", "2": b"v2"}
    assert (await durable.load_creds(ADDR)) == CredsRecord(b"creds", 1)
    ids = [str(i) for i in range(INLINE_IDS)]
    assert len(await durable.get_keys(ADDR, "session", ids)) == INLINE_IDS
    assert hops == []  # no hop at all
    ids = [str(i) for i in range(INLINE_IDS + 1)]
    assert len(await durable.get_keys(ADDR, "session", ids)) == INLINE_IDS + 1
    assert hops == [1]
    # an inline read sees what the writer thread committed just before
    await durable.write_keys(ADDR, [KeyWrite("session", "1", b"new")])
    assert await durable.get_keys(ADDR, "session", ["1"]) == {"1": b"new"}


async def test_while_a_write_runs_small_reads_go_to_the_reader_thread(
    durable: SQLiteDurable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop busy with inline reads would starve the writer thread of the GIL."""
    hops = _no_hops(durable, monkeypatch)
    started, release = threading.Event(), threading.Event()

    def slow_write(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(5)

    write = asyncio.ensure_future(durable._write(slow_write))
    await asyncio.to_thread(started.wait, 5)
    assert await durable.get_keys(ADDR, "session", ["4"]) == {"4": b"v4"}
    assert hops == [1]
    release.set()
    await write
    assert await durable.get_keys(ADDR, "session", ["4"]) == {"4": b"v4"}
    assert hops == [1]  # the writer is idle again: inline


@pytest.mark.parametrize("code", [sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, 261])
async def test_an_inline_read_that_would_wait_goes_to_the_reader_thread(
    durable: SQLiteDurable, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    hops = _no_hops(durable, monkeypatch)
    inline = durable._inline
    assert inline is not None
    failing = _Failing(code)  # 261 = SQLITE_BUSY_RECOVERY: an extended busy code
    monkeypatch.setattr(inline, "_conn", failing)
    assert await durable.get_keys(ADDR, "session", ["3"]) == {"3": b"v3"}
    assert (await durable.load_creds(ADDR)) == CredsRecord(b"creds", 1)
    assert failing.calls == 2
    assert hops == [1, 1]  # answered by the reader thread, which may wait for the lock


async def test_an_inline_read_error_raises_unavailable_never_not_found(
    durable: SQLiteDurable, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = _no_hops(durable, monkeypatch)
    inline = durable._inline
    assert inline is not None
    monkeypatch.setattr(inline, "_conn", _Failing(sqlite3.SQLITE_IOERR))
    with pytest.raises(errors.UnavailableError, match="OperationalError"):
        await durable.get_keys(ADDR, "session", ["3"])
    with pytest.raises(errors.UnavailableError):
        await durable.load_creds(ADDR)
    assert hops == []


async def test_reads_after_close_raise_store_closed(durable: SQLiteDurable) -> None:
    await durable.close()
    with pytest.raises(errors.StoreClosedError):
        await durable.get_keys(ADDR, "session", ["1"])
    with pytest.raises(errors.StoreClosedError):
        await durable.load_creds(ADDR)
