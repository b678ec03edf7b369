"""PostgreSQL schema versions: the DDL of each migration, and :func:`migrate` applying them.

Each script is idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE``), runs under the migration
advisory lock in one transaction, and is composed with the schema as a quoted identifier.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from ... import errors

if TYPE_CHECKING:
    from ._schema import Queries

SCHEMA_VERSION = 4
ADVISORY_CLASS = 0x6273  # "bs": first key of pg_advisory_xact_lock(int, int)
META_EXISTS = "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'meta'"

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

# Version 4: fence tombstones (issue 12). ``delete_session`` keeps the session row, emptied and
# flagged ``deleted``, so its fence survives, and ``advance_fence`` on a session never written
# inserts such a row. The tombstone lives in the session row rather than a table of its own
# because the row's primary key is the one lock every write already takes (``INSERT ... ON
# CONFLICT``): a stale writer and a new holder's barrier racing on a missing session collide on
# it, so the check and the insert cannot be separated. Listings skip deleted rows; a write that
# passes the fence check revives the row. ADD COLUMN with a constant default is metadata-only.
_V4 = """
ALTER TABLE {s}.sessions ADD COLUMN IF NOT EXISTS deleted boolean NOT NULL DEFAULT false;
"""

MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}


def advisory_key(schema: str) -> int:
    """Second key of the migration lock: stable per schema name, fits a signed int4."""
    digest = hashlib.blake2b(schema.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(conn: AsyncConnection[Any], schema: str, queries: Queries) -> str:
    """Create or upgrade the schema; serialized across processes by an advisory lock.

    An up-to-date schema needs no DDL (nor the privilege to run it): only a lookup.

    Returns:
        The store id of this database ("" if it did not read back).
    """
    async with conn.transaction():
        key = advisory_key(schema)
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ADVISORY_CLASS, key))
        cur = await conn.execute(META_EXISTS, (schema,))
        current = 0
        if await cur.fetchone():
            row = await (await conn.execute(queries.get_meta)).fetchone()
            current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise errors.UnavailableError(
                f"postgres schema {schema!r} is at version {current}, newer than "
                f"this baileys-store ({SCHEMA_VERSION})"
            )
        if current < SCHEMA_VERSION:
            # prepare=False: scripts of several statements cannot be prepared.
            await conn.execute(queries.meta, prepare=False)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                await conn.execute(queries.migrations[version], prepare=False)
            await conn.execute(queries.set_meta, (str(SCHEMA_VERSION),))
        # Who this database is, so a Redis cache can refuse a second database (store_id).
        await conn.execute(queries.init_store_id, (secrets.token_hex(8),))
        row = await (await conn.execute(queries.get_store_id)).fetchone()
        return str(row[0]) if row else ""


__all__ = [
    "ADVISORY_CLASS",
    "META_EXISTS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "advisory_key",
    "migrate",
]
