"""PostgreSQL schema, migrations and statements (one place, so migrations stay visible).

Everything lives in one schema (``baileys_store`` unless the URL says ``schema=``), so tables,
functions and the meta row of one store never collide with the application's own. Statements
are composed once per backend with the schema as a quoted identifier: no string interpolation
of user input, and no dependency on ``search_path`` (pgbouncer-safe).

Fencing and compare-and-set are checked *inside* the statement that locks the session row (two
tiny PL/pgSQL functions that raise a dedicated SQLSTATE), so a whole write can be pipelined in
one round trip and an error aborts everything sent after it, ``COMMIT`` included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import sql

SCHEMA_VERSION = 3
DEFAULT_SCHEMA = "baileys_store"
FENCED_STATE = "BSF01"  # raised by fence_check(); DETAIL = the session's current fence
CONFLICT_STATE = "BSC01"  # raised by next_version(); DETAIL = the current creds version
APPLIED_STATE = "BSS01"  # raised by seq_check(): the outbox batch was applied already
ADVISORY_CLASS = 0x6273  # "bs": first key of pg_advisory_xact_lock(int, int)

# Version 1. COLLATE "C": byte order, like every other backend's listing, and cheaper B-trees.
# The keys PK starts with (namespace, session_id), so hash-partitioning the table by those two
# columns keeps the PK valid (see the README recipe); IF NOT EXISTS keeps a pre-created one.
_V1 = """
CREATE TABLE IF NOT EXISTS {s}.sessions (
    namespace text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    creds bytea,
    version bigint NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, session_id)
) WITH (fillfactor = 80);
CREATE TABLE IF NOT EXISTS {s}.keys (
    namespace text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (namespace, session_id, type, id)
);
-- Blobs arrive compressed and often encrypted: pglz would only burn CPU on them.
ALTER TABLE {s}.sessions ALTER COLUMN creds SET STORAGE EXTERNAL;
ALTER TABLE {s}.keys ALTER COLUMN value SET STORAGE EXTERNAL;
CREATE OR REPLACE FUNCTION {s}.fence_check(current_fence bigint, token bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF token IS NULL THEN
        RETURN current_fence;
    END IF;
    IF token < current_fence THEN
        RAISE EXCEPTION USING ERRCODE = 'BSF01', MESSAGE = 'fenced',
            DETAIL = current_fence::text;
    END IF;
    RETURN token;
END $$;
CREATE OR REPLACE FUNCTION {s}.next_version(current_version bigint, expected bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF expected IS NOT NULL AND expected <> current_version THEN
        RAISE EXCEPTION USING ERRCODE = 'BSC01', MESSAGE = 'version conflict',
            DETAIL = current_version::text;
    END IF;
    RETURN current_version + 1;
END $$;
"""

# Version 2: the last applied outbox sequence, and leases for deployments without Redis. A
# leases row outlives delete_session: its token keeps lease tokens monotonic across a delete.
_V2 = """
ALTER TABLE {s}.sessions ADD COLUMN IF NOT EXISTS outbox_seq bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS {s}.leases (
    namespace text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (namespace, session_id)
);
CREATE OR REPLACE FUNCTION {s}.seq_check(current_seq bigint, seq bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF seq <= current_seq THEN
        RAISE EXCEPTION USING ERRCODE = 'BSS01', MESSAGE = 'applied already';
    END IF;
    RETURN seq;
END $$;
"""

# Version 3: room on every keys page for HOT updates. A key re-written in place (a ``session``
# on every message, sender keys, app-state versions, an 812-id pre-key upsert) then adds no index
# entry and dirties one page; at fillfactor 100 every update was a new index entry on a full
# page. Measured, 812-row upsert over existing rows, median of 25: 21.4 ms -> 15.5 ms; costs
# ~20% more heap space. Only pages written from now on get the room (no table rewrite). A
# hash-partitioned keys table (README recipe) takes the setting on each partition, not the parent.
_V3 = """
DO $$
DECLARE leaf regclass;
BEGIN
    -- pg_partition_tree() lists nothing for a plain table: then the table is the one leaf
    FOR leaf IN SELECT relid FROM pg_partition_tree('{s}.keys'::regclass) WHERE isleaf
                UNION SELECT '{s}.keys'::regclass
                WHERE (SELECT relkind FROM pg_class WHERE oid = '{s}.keys'::regclass) = 'r' LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 80)', leaf);
    END LOOP;
END $$;
"""

MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}

_META = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (name text PRIMARY KEY, value text NOT NULL);
"""

# Fence check + upsert of the session row. ON CONFLICT DO UPDATE locks the row for the rest of
# the transaction and re-reads it after waiting for a concurrent writer, so the check and every
# statement after it see the newest fence: no writer slips in between.
_TOUCH = """
INSERT INTO {s}.sessions AS s (namespace, session_id, fence)
VALUES (%(ns)s, %(sid)s, COALESCE(%(fence)s::bigint, 0))
ON CONFLICT (namespace, session_id) DO UPDATE
SET fence = {s}.fence_check(s.fence, %(fence)s::bigint), updated_at = now()
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
# An UPDATE (not SELECT ... FOR UPDATE) so the check runs on the newest row version.
_FENCE_FOR_DELETE = """
UPDATE {s}.sessions SET fence = {s}.fence_check(fence, %(fence)s::bigint)
WHERE namespace = %(ns)s AND session_id = %(sid)s
"""
_DELETE_SESSION = "DELETE FROM {s}.sessions WHERE namespace = %(ns)s AND session_id = %(sid)s"
_LIST_PAGE = """
SELECT namespace, session_id, version, extract(epoch FROM updated_at)::float8
FROM {s}.sessions WHERE (namespace, session_id) > (%s, %s) {ns_filter}
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
    updated_at = now()
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
META_EXISTS = (
    "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'meta'"
)
_GET_META = "SELECT value FROM {s}.meta WHERE name = 'schema_version'"
_INIT_STORE_ID = """
INSERT INTO {s}.meta (name, value) VALUES ('store_id', %s) ON CONFLICT (name) DO NOTHING
"""
_GET_STORE_ID = "SELECT value FROM {s}.meta WHERE name = 'store_id'"
_SET_META = """
INSERT INTO {s}.meta (name, value) VALUES ('schema_version', %s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
"""


def advisory_key(schema: str) -> int:
    """Second key of the migration lock: stable per schema name, fits a signed int4."""
    digest = hashlib.blake2b(schema.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


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
    touch: sql.Composed
    upsert_keys: sql.Composed
    delete_keys: sql.Composed
    get_keys: sql.Composed
    get_key: sql.Composed
    clear_keys: sql.Composed
    save_creds: sql.Composed
    load_creds: sql.Composed
    fence_for_delete: sql.Composed
    delete_session: sql.Composed
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
            touch=_q(_TOUCH, schema),
            upsert_keys=_q(_UPSERT_KEYS, schema),
            delete_keys=_q(_DELETE_KEYS, schema),
            get_keys=_q(_GET_KEYS, schema),
            get_key=_q(_GET_KEY, schema),
            clear_keys=_q(_CLEAR_KEYS, schema),
            save_creds=_q(_SAVE_CREDS, schema),
            load_creds=_q(_LOAD_CREDS, schema),
            fence_for_delete=_q(_FENCE_FOR_DELETE, schema),
            delete_session=_q(_DELETE_SESSION, schema),
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
    "ADVISORY_CLASS",
    "APPLIED_STATE",
    "CONFLICT_STATE",
    "DEFAULT_SCHEMA",
    "FENCED_STATE",
    "META_EXISTS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Queries",
    "advisory_key",
]
