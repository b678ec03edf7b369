"""SQLite schema and statements (one place, so migrations stay visible)."""

from __future__ import annotations

SCHEMA_VERSION = 1

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
"""

SELECT_SESSION = "SELECT fence, version FROM bs_sessions WHERE namespace = ? AND session_id = ?"
TOUCH_SESSION = """
INSERT INTO bs_sessions (namespace, session_id, fence, created_at, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, session_id) DO UPDATE SET fence = excluded.fence,
    updated_at = excluded.updated_at
"""
UPSERT_KEY = """
INSERT INTO bs_keys (namespace, session_id, type, id, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, session_id, type, id) DO UPDATE SET value = excluded.value
"""
DELETE_KEY = "DELETE FROM bs_keys WHERE namespace = ? AND session_id = ? AND type = ? AND id = ?"
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
