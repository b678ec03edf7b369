"""SQLite schema: a file an older release wrote upgrades in place on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.backends.sqlite._schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from baileys_store.contracts import LeaseBackend
from tests.integration._backend_cases import opened

# The SQLite layout as version 1 wrote it (frozen here: the module only knows the newest).
_SQLITE_V1 = """
CREATE TABLE bs_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE bs_sessions (
    namespace TEXT NOT NULL, session_id TEXT NOT NULL, creds BLOB,
    version INTEGER NOT NULL DEFAULT 0, fence INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, session_id)
) WITHOUT ROWID;
CREATE TABLE bs_keys (
    namespace TEXT NOT NULL, session_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (namespace, session_id, type, id)
) WITHOUT ROWID;
INSERT INTO bs_meta VALUES ('schema_version', '1');
"""


async def test_sqlite_version_1_file_upgrades_in_place(tmp_path: Path) -> None:
    path, a = tmp_path / "v1.db", SessionAddr("ns", "old")
    with sqlite3.connect(path) as conn:
        conn.executescript(_SQLITE_V1)
        conn.execute(
            "INSERT INTO bs_sessions VALUES ('ns', 'old', x'6331', 1, ?, 1.0, 2.0)",
            (5 << FENCE_SHIFT,),
        )
        conn.execute("INSERT INTO bs_keys VALUES ('ns', 'old', 'session', 'x', x'31')")
    conn.close()
    async with opened(SQLiteDurable(path)) as durable:
        assert await durable.load_creds(a) == CredsRecord(b"c1", 1)
        assert await durable.get_keys(a, "session", ["x"]) == {"x": b"1"}
        assert await durable.apply_batch(
            a, [KeyWrite("session", "x", b"2")], None, seq=2, fence=5 << FENCE_SHIFT
        )
        assert not await durable.apply_batch(a, [], None, seq=2)
        assert isinstance(durable, LeaseBackend)
        assert await durable.acquire_lease(a, "p1", 1000) == 6  # above the recorded fence
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM bs_meta WHERE name = 'schema_version'").fetchall()
        seq = conn.execute("SELECT outbox_seq FROM bs_sessions").fetchall()
    conn.close()
    assert version == [(str(SQLITE_SCHEMA_VERSION),)]
    assert seq == [(2,)]
