"""SQLite schema and statements (one place, so migrations stay visible)."""

from __future__ import annotations

SCHEMA_VERSION = 2

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

# MIGRATIONS[v - 1] upgrades schema v to v + 1 (bs_leases comes with SCHEMA: IF NOT EXISTS).
# A bs_leases row is never deleted, not even by delete_session: its token is the counter
# that keeps lease tokens monotonic across a delete; expiry is this host's clock.
MIGRATIONS = (
    "ALTER TABLE bs_sessions ADD COLUMN outbox_seq INTEGER NOT NULL DEFAULT 0",
)

SELECT_SESSION = "SELECT fence, version FROM bs_sessions WHERE namespace = ? AND session_id = ?"
SELECT_SEQ = "SELECT outbox_seq FROM bs_sessions WHERE namespace = ? AND session_id = ?"
SET_FENCE = "UPDATE bs_sessions SET fence = ? WHERE namespace = ? AND session_id = ?"
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
