"""Group commit on a real SQLite file: grouped calls stay atomic one by one and are durable."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from baileys_store import errors
from baileys_store.backends._sqlite_batch import Batcher, Job


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
    batcher = Counting(ex, lambda: conn, transaction=True)
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
