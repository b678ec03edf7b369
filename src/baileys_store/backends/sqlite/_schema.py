"""SQLite schema, migrations, metadata and statements (one place, so migrations stay visible)."""

from __future__ import annotations

import secrets
import sqlite3

from ... import errors

SCHEMA_VERSION = 3
ID_CHUNK = 500  # ids per IN (...) query; far below SQLite's variable limit

# WITHOUT ROWID: the primary key is the clustered index, so a key lookup is one B-tree descent
# whose cost grows with log(total keys), never with the size of one session.
SCHEMA = """
CREATE TABLE IF NOT EXISTS bs_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bs_sessions (
    namespace TEXT NOT NULL,
    session_id TEXT NOT NULL,
    creds BLOB,
    version INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    outbox_seq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bs_keys (
    namespace TEXT NOT NULL,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, session_id, type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bs_leases (
    namespace TEXT NOT NULL,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (namespace, session_id)
) WITHOUT ROWID;
"""
# Fence tombstones (v3): the fence of a session that has no bs_sessions row (deleted, or fenced
# by advance_fence before its first write), so a stale lease holder cannot resurrect it. Read
# only when the row is missing; dropped when the row is re-created (the row carries the fence).
# Not in bs_leases: a lease row holds this host's lease (owner, token, expiry), while a fence is
# the durable barrier every write path checks, also on stores that never take leases.
FENCES_TABLE = """
CREATE TABLE IF NOT EXISTS bs_fences (
    namespace TEXT NOT NULL,
    session_id TEXT NOT NULL,
    fence INTEGER NOT NULL,
    PRIMARY KEY (namespace, session_id)
) WITHOUT ROWID
"""
SCHEMA += FENCES_TABLE + ";"

# MIGRATIONS[v - 1] upgrades schema v to v + 1 (bs_leases comes with SCHEMA: IF NOT EXISTS).
# A bs_leases row is never deleted, not even by delete_session: its token is the counter
# that keeps lease tokens monotonic across a delete; expiry is this host's clock.
MIGRATIONS = (
    "ALTER TABLE bs_sessions ADD COLUMN outbox_seq INTEGER NOT NULL DEFAULT 0",
    FENCES_TABLE,  # v2 deleted a session's fence with its row: there is nothing to carry over
)


def _migrate(w: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` inside the caller's write transaction."""
    row = w.execute("SELECT value FROM bs_meta WHERE name = 'schema_version'").fetchone()
    found = SCHEMA_VERSION if row is None else int(row[0])
    if found > SCHEMA_VERSION:
        raise errors.UnavailableError(
            f"database schema {found} is newer than this baileys-store ({SCHEMA_VERSION})"
        )
    for step in MIGRATIONS[found - 1 :]:
        w.execute(step)
    w.execute(
        "INSERT INTO bs_meta (name, value) VALUES ('schema_version', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )


def init_schema(w: sqlite3.Connection) -> None:
    """WAL mode, the tables, then the migrations to ``SCHEMA_VERSION`` (one migrator at a time)."""
    # 16 KiB pages keep 1-2 KB session records out of overflow pages (3x less disk, faster
    # point reads); it only takes effect on a new file, before WAL is switched on.
    w.execute("PRAGMA page_size = 16384")
    mode = w.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise errors.UnavailableError(f"SQLite refused WAL mode (got {mode})")
    w.executescript(SCHEMA)
    w.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others then see it done
    try:
        _migrate(w)
    except BaseException:
        w.execute("ROLLBACK")
        raise
    w.execute("COMMIT")


def store_id(w: sqlite3.Connection) -> str:
    """Who this database is (made at its first open), so a Redis cache can refuse a second one."""
    w.execute(
        "INSERT OR IGNORE INTO bs_meta (name, value) VALUES ('store_id', ?)",
        (secrets.token_hex(8),),
    )
    return str(w.execute("SELECT value FROM bs_meta WHERE name = 'store_id'").fetchone()[0])


def bind_meta(conn: sqlite3.Connection, name: str, value: str, replace: bool) -> str:
    """Set ``name`` unless it is set (always with ``replace``); returns the stored value.

    Run in a write transaction (``BEGIN IMMEDIATE``), so binders in other processes agree.
    """
    conn.execute(PUT_META if replace else INSERT_META, (name, value))
    return str(conn.execute(SELECT_META, (name,)).fetchone()[0])


SELECT_SESSION = "SELECT fence, version FROM bs_sessions WHERE namespace = ? AND session_id = ?"
SELECT_SEQ = "SELECT outbox_seq FROM bs_sessions WHERE namespace = ? AND session_id = ?"
SET_FENCE = "UPDATE bs_sessions SET fence = ? WHERE namespace = ? AND session_id = ?"
SELECT_TOMBSTONE = "SELECT fence FROM bs_fences WHERE namespace = ? AND session_id = ?"
PUT_TOMBSTONE = """
INSERT INTO bs_fences (namespace, session_id, fence) VALUES (?, ?, ?)
ON CONFLICT (namespace, session_id) DO UPDATE SET fence = excluded.fence
"""
DROP_TOMBSTONE = "DELETE FROM bs_fences WHERE namespace = ? AND session_id = ?"
SELECT_META = "SELECT value FROM bs_meta WHERE name = ?"
INSERT_META = "INSERT OR IGNORE INTO bs_meta (name, value) VALUES (?, ?)"
PUT_META = """
INSERT INTO bs_meta (name, value) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value
"""
SET_SEQ = "UPDATE bs_sessions SET outbox_seq = ? WHERE namespace = ? AND session_id = ?"
SELECT_LEASE = "SELECT owner, token, expires FROM bs_leases WHERE namespace = ? AND session_id = ?"
PUT_LEASE = """
INSERT INTO bs_leases (namespace, session_id, owner, token, expires) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, session_id) DO UPDATE SET owner = excluded.owner,
    token = excluded.token, expires = excluded.expires
"""
RENEW_LEASE = """
UPDATE bs_leases SET expires = ?
WHERE namespace = ? AND session_id = ? AND owner = ? AND token = ? AND expires > ?
"""
RELEASE_LEASE = """
UPDATE bs_leases SET owner = '', expires = 0
WHERE namespace = ? AND session_id = ? AND owner = ? AND token = ?
"""
TOUCH_SESSION = """
INSERT INTO bs_sessions (namespace, session_id, fence, created_at, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, session_id) DO UPDATE SET fence = excluded.fence,
    updated_at = excluded.updated_at
"""
# Many rows of one type per statement (``{rows}`` = ``(?, ?), (?, ?), …`` of id, value): the
# session and type are bound once, and one statement replaces hundreds of executemany steps
# (measured: an 812-key upsert 6.9 ms -> 2.3 ms). Rows apply in order, so a later duplicate id
# wins. ``WHERE true`` keeps ``ON CONFLICT`` from parsing as a join constraint.
UPSERT_KEYS = """
INSERT INTO bs_keys (namespace, session_id, type, id, value)
SELECT ?, ?, ?, column1, column2 FROM (VALUES {rows}) WHERE true
ON CONFLICT (namespace, session_id, type, id) DO UPDATE SET value = excluded.value
"""
DELETE_KEYS = """
DELETE FROM bs_keys WHERE namespace = ? AND session_id = ? AND type = ? AND id IN ({marks})
"""
CLEAR_KEYS = "DELETE FROM bs_keys WHERE namespace = ? AND session_id = ?"
DELETE_SESSION = "DELETE FROM bs_sessions WHERE namespace = ? AND session_id = ?"
SAVE_CREDS = """
UPDATE bs_sessions SET creds = ?, version = ? WHERE namespace = ? AND session_id = ?
"""
LOAD_CREDS = """
SELECT creds, version FROM bs_sessions
WHERE namespace = ? AND session_id = ? AND creds IS NOT NULL
"""
GET_KEYS = """
SELECT id, value FROM bs_keys
WHERE namespace = ? AND session_id = ? AND type = ? AND id IN ({marks})
"""
LIST_PAGE = """
SELECT namespace, session_id, version, updated_at FROM bs_sessions
WHERE (namespace, session_id) > (?, ?) {ns_filter}
ORDER BY namespace, session_id LIMIT ?
"""
KEY_IDS_PAGE = """
SELECT type, id FROM bs_keys
WHERE namespace = ? AND session_id = ? AND (type, id) > (?, ?)
ORDER BY type, id LIMIT ?
"""
COUNT_KEYS = """
SELECT type, count(*) FROM bs_keys WHERE namespace = ? AND session_id = ? GROUP BY type
"""
