"""SQLite fence tombstones: a stale lease holder cannot resurrect a deleted session, and a v2
database upgrades in place to v3 (tombstones) keeping its data and fences."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.backends.sqlite import _schema as q
from tests.creds_data import node_creds

A = SessionAddr("default", "s1")

# The schema of baileys-store 0.x at SCHEMA_VERSION 2, as such a file holds it.
V2_SCHEMA = """
CREATE TABLE bs_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE bs_sessions (
    namespace TEXT NOT NULL, session_id TEXT NOT NULL, creds BLOB,
    version INTEGER NOT NULL DEFAULT 0, fence INTEGER NOT NULL DEFAULT 0,
    outbox_seq INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, session_id)) WITHOUT ROWID;
CREATE TABLE bs_keys (
    namespace TEXT NOT NULL, session_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (namespace, session_id, type, id)) WITHOUT ROWID;
CREATE TABLE bs_leases (
    namespace TEXT NOT NULL, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    token INTEGER NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (namespace, session_id)) WITHOUT ROWID;
INSERT INTO bs_meta VALUES ('schema_version', '2'), ('store_id', 'feedfacecafebeef');
INSERT INTO bs_sessions VALUES ('default', 's1', x'c0ffee', 3, 21474836481, 4, 1.0, 2.0);
INSERT INTO bs_keys VALUES ('default', 's1', 'session', 'x', x'01');
INSERT INTO bs_leases VALUES ('default', 's1', 'old-host', 5, 0);
"""
V2_FENCE = 21474836481  # (5 << 32) | 1: lease token 5, first write of its term


def v2_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V2_SCHEMA)
    conn.close()
    return path


async def test_v2_file_upgrades_in_place_keeping_data_and_fences(tmp_path: Path) -> None:
    db = v2_file(tmp_path / "v2.db")
    durable = SQLiteDurable(db)
    await durable.open()
    try:
        assert durable.store_id == "feedfacecafebeef"
        assert await durable.load_creds(A) == CredsRecord(b"\xc0\xff\xee", 3)
        assert await durable.get_keys(A, "session", ["x"]) == {"x": b"\x01"}
        with pytest.raises(errors.FencedError) as info:  # the row's fence still holds
            await durable.write_keys(A, [KeyWrite("session", "x", b"stale")], fence=V2_FENCE - 1)
        assert info.value.current == V2_FENCE
        assert await durable.delete_session(A)
        with pytest.raises(errors.FencedError):  # and survives the delete now
            await durable.save_creds(A, b"stale", fence=V2_FENCE - 1)
        token = await durable.acquire_lease(A, "new-host", 5000)
        assert token == 6  # above the v2 lease row and the tombstone
    finally:
        await durable.close()
    conn = sqlite3.connect(db)
    try:
        version = conn.execute("SELECT value FROM bs_meta WHERE name = 'schema_version'")
        assert version.fetchone() == (str(q.SCHEMA_VERSION),)
        assert q.SCHEMA_VERSION == 3
        assert conn.execute("SELECT * FROM bs_fences").fetchall() == [("default", "s1", V2_FENCE)]
    finally:
        conn.close()
    again = SQLiteDurable(db)  # a second open of the upgraded file migrates nothing
    await again.open()
    try:
        with pytest.raises(errors.FencedError):
            await again.write_keys(A, [KeyWrite("session", "x", b"stale")], fence=V2_FENCE - 1)
    finally:
        await again.close()


async def test_a_v3_file_is_refused_by_a_v2_reader(tmp_path: Path) -> None:
    """The guard that keeps an older version from ignoring the tombstones."""
    db = tmp_path / "v3.db"
    durable = SQLiteDurable(db)
    await durable.open()
    await durable.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE bs_meta SET value = '4' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(errors.UnavailableError, match="newer than this baileys-store"):
        await SQLiteDurable(db).open()


async def test_tombstone_is_dropped_when_the_row_comes_back(tmp_path: Path) -> None:
    durable = SQLiteDurable(tmp_path / "t.db")
    await durable.open()
    try:
        await durable.advance_fence(A, 7 << FENCE_SHIFT)  # never written: only a tombstone
        assert await durable.acquire_lease(A, "p", 5000) == 8  # floored on the tombstone
        await durable.save_creds(A, b"c", fence=8 << FENCE_SHIFT)
        rows = await durable._read(lambda c: c.execute("SELECT * FROM bs_fences").fetchall())
        assert rows == []  # the row carries the fence now
        with pytest.raises(errors.FencedError):
            await durable.save_creds(A, b"stale", fence=7 << FENCE_SHIFT)
    finally:
        await durable.close()


async def test_stale_holder_cannot_resurrect_a_deleted_session(tmp_path: Path) -> None:
    """Process A holds the lease, pauses past its TTL; B takes over and deletes the session;
    A resumes and writes. Its write is refused (FencedError) and nothing of it lands."""
    url = f"sqlite:///{tmp_path / 'leased.db'}"

    def config() -> StoreConfig:
        return StoreConfig(durable=url, cache=None, lease="on", lease_ttl=1.0)

    a, b = AuthStore(config()), AuthStore(config())
    await a.open()
    await b.open()
    try:
        await a.session("s1").keys.set({"session": {"x": b"a1"}})
        await a.session("s1").save_creds(node_creds())
        leases = a._engine.leases
        assert leases is not None
        await leases.stop_renewing()  # A is paused: its lease runs out
        await asyncio.sleep(1.2)
        assert await b.session("s1").delete()
        await b.close()  # B is gone too: nothing but the tombstone stands in A's way

        with pytest.raises(errors.FencedError):
            await a.session("s1").keys.set({"session": {"x": b"stale"}})
        with pytest.raises((errors.FencedError, errors.LeaseLostError)):  # told once, then lost
            await a.session("s1").save_creds(node_creds())
        durable = a.durable
        assert await durable.get_keys(A, "session", ["x"]) == {}
        assert await durable.load_creds(A) is None
        assert [i.session_id async for i in durable.list_sessions()] == []
    finally:
        await a.close()
        await b.close()
