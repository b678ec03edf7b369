"""PostgreSQL statements, composed per schema (the DDL of each version: ``_migrations``).

Everything lives in one schema (``baileys_store`` unless the URL says ``schema=``), so tables,
functions and the meta row of one store never collide with the application's own. Statements
are composed once per backend with the schema as a quoted identifier: no string interpolation
of user input, and no dependency on ``search_path`` (pgbouncer-safe).

Fencing and compare-and-set are checked *inside* the statement that locks the session row (two
tiny PL/pgSQL functions that raise a dedicated SQLSTATE), so a whole write can be pipelined in
one round trip and an error aborts everything sent after it, ``COMMIT`` included.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ._migrations import MIGRATIONS, SCHEMA_VERSION

DEFAULT_SCHEMA = "baileys_store"
FENCED_STATE = "BSF01"  # raised by fence_check(); DETAIL = the session's current fence
CONFLICT_STATE = "BSC01"  # raised by next_version(); DETAIL = the current creds version
APPLIED_STATE = "BSS01"  # raised by seq_check(): the outbox batch was applied already
# Names the backend keeps in the meta table itself: bind_meta may not take them over.
RESERVED_META = frozenset({"schema_version", "store_id"})

_META = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (name text PRIMARY KEY, value text NOT NULL);
"""

# Fence check + upsert of the session row. ON CONFLICT DO UPDATE locks the row for the rest of
# the transaction and re-reads it after waiting for a concurrent writer, so the check and every
# statement after it see the newest fence: no writer slips in between. A tombstone (a deleted
# row, schema v4) is checked like a live row, then revived.
_TOUCH = """
INSERT INTO {s}.sessions AS s (namespace, session_id, fence)
VALUES (%(ns)s, %(sid)s, COALESCE(%(fence)s::bigint, 0))
ON CONFLICT (namespace, session_id) DO UPDATE
SET fence = {s}.fence_check(s.fence, %(fence)s::bigint), updated_at = now(),
    deleted = false, created_at = CASE WHEN s.deleted THEN now() ELSE s.created_at END
RETURNING version
"""
# Duplicate (type, id) pairs are removed by the caller: ON CONFLICT may touch a row only once.
# Arrays go in binary (``%b``): psycopg's text dump escapes every bytea element with a regex,
# which cost ~15 ms of client CPU per 812-key batch (measured), more than the server's work.
_UPSERT_KEYS = """
INSERT INTO {s}.keys (namespace, session_id, type, id, value)
SELECT %(ns)s, %(sid)s, u.t, u.i, u.v
FROM unnest(%(types)b::text[], %(ids)b::text[], %(values)b::bytea[]) AS u(t, i, v)
ON CONFLICT (namespace, session_id, type, id) DO UPDATE SET value = EXCLUDED.value
"""
# The usual batch (812 pre-keys at pairing, a message's sessions) has one type: sent once as a
# scalar rather than repeated in a third array (measured: ~0.5 ms of an 812-key set, 6-8 %).
_UPSERT_KEYS_ONE_TYPE = """
INSERT INTO {s}.keys (namespace, session_id, type, id, value)
SELECT %(ns)s, %(sid)s, %(type)s, u.i, u.v
FROM unnest(%(ids)b::text[], %(values)b::bytea[]) AS u(i, v)
ON CONFLICT (namespace, session_id, type, id) DO UPDATE SET value = EXCLUDED.value
"""
_DELETE_KEYS = """
DELETE FROM {s}.keys k
USING unnest(%(types)b::text[], %(ids)b::text[]) AS u(t, i)
WHERE k.namespace = %(ns)s AND k.session_id = %(sid)s AND k.type = u.t AND k.id = u.i
"""
_GET_KEYS = """
SELECT id, value FROM {s}.keys
WHERE namespace = %s AND session_id = %s AND type = %s AND id = ANY(%b::text[])
"""
# One id: a scalar comparison. With ``= ANY(array)`` on a table autovacuum has not analysed yet,
# the planner may use the primary key only up to ``type`` and filter ids row by row (measured:
# 2.4 ms instead of 0.02 ms for one id in a 10k-key session).
_GET_KEY = """
SELECT id, value FROM {s}.keys
WHERE namespace = %s AND session_id = %s AND type = %s AND id = %s
"""
_CLEAR_KEYS = "DELETE FROM {s}.keys WHERE namespace = %(ns)s AND session_id = %(sid)s"
_SAVE_CREDS = """
UPDATE {s}.sessions SET creds = %(blob)s, version = {s}.next_version(version, %(expected)s::bigint)
WHERE namespace = %(ns)s AND session_id = %(sid)s
RETURNING version
"""
_LOAD_CREDS = """
SELECT creds, version FROM {s}.sessions
WHERE namespace = %s AND session_id = %s AND creds IS NOT NULL
"""
# The fence barrier (advance_fence) and the first statement of delete_session: check and record
# the token on the row, inserting a tombstone when the session has none, so the row is locked
# either way (a stale writer inserting the row at the same moment waits, then is checked).
_FENCE = """
INSERT INTO {s}.sessions AS s (namespace, session_id, fence, deleted)
VALUES (%(ns)s, %(sid)s, COALESCE(%(fence)s::bigint, 0), true)
ON CONFLICT (namespace, session_id) DO UPDATE
SET fence = {s}.fence_check(s.fence, %(fence)s::bigint)
"""
# delete_session empties the row and keeps it as the fence's tombstone; the rowcount says
# whether a live session was there. A tombstone with fence 0 (never leased) protects nothing.
_MARK_DELETED = """
UPDATE {s}.sessions
SET deleted = true, creds = NULL, version = 0, outbox_seq = 0, updated_at = now()
WHERE namespace = %(ns)s AND session_id = %(sid)s AND NOT deleted
"""
_DROP_BARE_TOMBSTONE = """
DELETE FROM {s}.sessions
WHERE namespace = %(ns)s AND session_id = %(sid)s AND deleted AND fence = 0
"""
_LIST_PAGE = """
SELECT namespace, session_id, version, extract(epoch FROM updated_at)::float8
FROM {s}.sessions WHERE (namespace, session_id) > (%s, %s) AND NOT deleted {ns_filter}
ORDER BY namespace, session_id LIMIT %s
"""
# The session upsert of an outbox batch: like _TOUCH, and on the locked row the sequence check
# comes first (a redelivery is skipped even after a newer holder advanced the fence). Both SET
# expressions raise BSS01 for an applied batch, whatever order the server evaluates them in.
_TOUCH_BATCH = """
INSERT INTO {s}.sessions AS s (namespace, session_id, fence, outbox_seq)
VALUES (%(ns)s, %(sid)s, COALESCE(%(fence)s::bigint, 0), %(seq)s::bigint)
ON CONFLICT (namespace, session_id) DO UPDATE
SET outbox_seq = {s}.seq_check(s.outbox_seq, %(seq)s::bigint),
    fence = CASE WHEN s.outbox_seq >= %(seq)s::bigint
                 THEN {s}.seq_check(s.outbox_seq, %(seq)s::bigint)
                 ELSE {s}.fence_check(s.fence, %(fence)s::bigint) END,
    updated_at = now(),
    deleted = false, created_at = CASE WHEN s.deleted THEN now() ELSE s.created_at END
"""
_PUT_CREDS = """
UPDATE {s}.sessions SET creds = %(blob)s, version = %(version)s
WHERE namespace = %(ns)s AND session_id = %(sid)s
"""
# The token is above the last one issued, the session's fence and the caller's floor. ON
# CONFLICT DO UPDATE locks the row: a concurrent acquirer waits, then sees the new owner.
_ACQUIRE = """
INSERT INTO {s}.leases AS l (namespace, session_id, owner, token, expires)
VALUES (%(ns)s, %(sid)s, %(owner)s, GREATEST(%(floor)s::bigint, COALESCE((
        SELECT fence >> 32 FROM {s}.sessions
        WHERE namespace = %(ns)s AND session_id = %(sid)s), 0)) + 1,
    clock_timestamp() + %(ttl)s * interval '1 millisecond')
ON CONFLICT (namespace, session_id) DO UPDATE
SET owner = EXCLUDED.owner, token = GREATEST(l.token + 1, EXCLUDED.token),
    expires = EXCLUDED.expires
WHERE l.owner = EXCLUDED.owner OR l.owner = '' OR l.expires <= clock_timestamp()
RETURNING token
"""
_RENEW = """
UPDATE {s}.leases SET expires = clock_timestamp() + %(ttl)s * interval '1 millisecond'
WHERE namespace = %(ns)s AND session_id = %(sid)s AND owner = %(owner)s AND token = %(token)s
    AND expires > clock_timestamp()
"""
_RELEASE = """
UPDATE {s}.leases SET owner = '', expires = clock_timestamp()
WHERE namespace = %(ns)s AND session_id = %(sid)s AND owner = %(owner)s AND token = %(token)s
"""
_KEY_IDS_PAGE = """
SELECT type, id FROM {s}.keys
WHERE namespace = %s AND session_id = %s AND (type, id) > (%s, %s)
ORDER BY type, id LIMIT %s
"""
_COUNT_KEYS = """
SELECT type, count(*) FROM {s}.keys WHERE namespace = %s AND session_id = %s GROUP BY type
"""
_GET_META = "SELECT value FROM {s}.meta WHERE name = 'schema_version'"
_INIT_STORE_ID = """
INSERT INTO {s}.meta (name, value) VALUES ('store_id', %s) ON CONFLICT (name) DO NOTHING
"""
_GET_STORE_ID = "SELECT value FROM {s}.meta WHERE name = 'store_id'"
# DO UPDATE (not DO NOTHING) so one statement always returns the stored value: it waits for a
# concurrent binder's commit, then re-reads the row it lost to.
_BIND_META = """
INSERT INTO {s}.meta AS m (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO UPDATE
SET value = CASE WHEN %(replace)s::boolean THEN EXCLUDED.value ELSE m.value END
RETURNING value
"""
_SET_META = """
INSERT INTO {s}.meta (name, value) VALUES ('schema_version', %s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
"""


def _q(text: str, schema: str, **extra: sql.Composable) -> sql.Composed:
    # Templates are constants of this module; the schema goes in as a quoted identifier.
    return sql.SQL(text).format(s=sql.Identifier(schema), **extra)


@dataclass(frozen=True, slots=True)
class Queries:
    """Every statement of the backend, composed for one schema."""

    meta: sql.Composed
    migrations: dict[int, sql.Composed]
    get_meta: sql.Composed
    init_store_id: sql.Composed
    get_store_id: sql.Composed
    set_meta: sql.Composed
    bind_meta: sql.Composed
    touch: sql.Composed
    upsert_keys: sql.Composed
    upsert_keys_one_type: sql.Composed
    delete_keys: sql.Composed
    get_keys: sql.Composed
    get_key: sql.Composed
    clear_keys: sql.Composed
    save_creds: sql.Composed
    load_creds: sql.Composed
    fence: sql.Composed
    mark_deleted: sql.Composed
    drop_bare_tombstone: sql.Composed
    list_all: sql.Composed
    list_namespace: sql.Composed
    touch_batch: sql.Composed
    put_creds: sql.Composed
    acquire: sql.Composed
    renew: sql.Composed
    release: sql.Composed
    key_ids_page: sql.Composed
    count_keys: sql.Composed

    @classmethod
    def for_schema(cls, schema: str) -> Queries:
        """Compose every statement for ``schema`` (already validated as an identifier)."""
        return cls(
            meta=_q(_META, schema),
            migrations={v: _q(text, schema) for v, text in MIGRATIONS.items()},
            get_meta=_q(_GET_META, schema),
            init_store_id=_q(_INIT_STORE_ID, schema),
            get_store_id=_q(_GET_STORE_ID, schema),
            set_meta=_q(_SET_META, schema),
            bind_meta=_q(_BIND_META, schema),
            touch=_q(_TOUCH, schema),
            upsert_keys=_q(_UPSERT_KEYS, schema),
            upsert_keys_one_type=_q(_UPSERT_KEYS_ONE_TYPE, schema),
            delete_keys=_q(_DELETE_KEYS, schema),
            get_keys=_q(_GET_KEYS, schema),
            get_key=_q(_GET_KEY, schema),
            clear_keys=_q(_CLEAR_KEYS, schema),
            save_creds=_q(_SAVE_CREDS, schema),
            load_creds=_q(_LOAD_CREDS, schema),
            fence=_q(_FENCE, schema),
            mark_deleted=_q(_MARK_DELETED, schema),
            drop_bare_tombstone=_q(_DROP_BARE_TOMBSTONE, schema),
            list_all=_q(_LIST_PAGE, schema, ns_filter=sql.SQL("")),
            list_namespace=_q(_LIST_PAGE, schema, ns_filter=sql.SQL("AND namespace = %s")),
            touch_batch=_q(_TOUCH_BATCH, schema),
            put_creds=_q(_PUT_CREDS, schema),
            acquire=_q(_ACQUIRE, schema),
            renew=_q(_RENEW, schema),
            release=_q(_RELEASE, schema),
            key_ids_page=_q(_KEY_IDS_PAGE, schema),
            count_keys=_q(_COUNT_KEYS, schema),
        )


__all__ = [
    "APPLIED_STATE",
    "CONFLICT_STATE",
    "DEFAULT_SCHEMA",
    "FENCED_STATE",
    "MIGRATIONS",
    "RESERVED_META",
    "SCHEMA_VERSION",
    "Queries",
]
