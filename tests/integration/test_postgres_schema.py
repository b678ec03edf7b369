"""PostgreSQL schema on a real server: creation, partitions, migrations, tombstone rows."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from psycopg import sql

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import postgres as pg
from baileys_store.backends.postgres import _schema as q
from tests._services.postgres import PostgresDatabase
from tests.integration.test_postgres import (
    ADDR,
    Admin,
    admin,
    durable,
    fetch,
    opened,
    schema,
    store,
)

__all__ = ["admin", "schema", "store"]  # fixtures, imported for pytest
NS = "clinic-1/tomb"


def fresh() -> SessionAddr:
    return SessionAddr(NS, f"s-{uuid.uuid4().hex[:8]}")


async def rows_of(conn: Admin, schema: str, a: SessionAddr) -> list[tuple[Any, ...]]:
    return await fetch(
        conn,
        f"SELECT fence, deleted, creds, version, outbox_seq FROM {schema}.sessions "
        "WHERE namespace = %s AND session_id = %s",
        a.namespace,
        a.session_id,
    )


# --- schema ------------------------------------------------------------------------------------


async def test_schema_creation_idempotent_and_concurrent(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    backends = [durable(postgres_db.dsn, schema, min_size=0) for _ in range(5)]
    await asyncio.gather(*(b.open() for b in backends))  # racing migrations serialize
    await asyncio.gather(*(b.close() for b in backends))
    async with opened(durable(postgres_db.dsn, schema)) as again:
        await again.write_keys(ADDR, [KeyWrite("session", "a", b"1")])
    assert await fetch(admin, f"SELECT name, value FROM {schema}.meta ORDER BY 1") == [
        ("schema_version", str(q.SCHEMA_VERSION)),
        ("store_id", again.store_id),
    ]
    assert {b.store_id for b in backends} == {again.store_id}  # the racing openers agree
    tables = await fetch(
        admin, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema
    )
    assert tables == [("keys",), ("leases",), ("meta",), ("sessions",)]
    await admin.execute(
        f"UPDATE {schema}.meta SET value = '{q.SCHEMA_VERSION + 1}' "
        "WHERE name = 'schema_version'".encode()
    )
    with pytest.raises(errors.UnavailableError, match="newer than this baileys-store"):
        await durable(postgres_db.dsn, schema).open()


async def test_hash_partitioned_keys_table(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    """The README recipe: keys hash-partitioned by (namespace, session_id) before first open."""
    await admin.execute(
        sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.keys ("
            ' namespace text COLLATE "C" NOT NULL, session_id text COLLATE "C" NOT NULL,'
            ' type text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,'
            " value bytea NOT NULL, PRIMARY KEY (namespace, session_id, type, id)"
            ") PARTITION BY HASH (namespace, session_id);"
        ).format(s=sql.Identifier(schema))
    )
    for r in range(4):
        await admin.execute(
            sql.SQL(
                "CREATE TABLE {p} PARTITION OF {s}.keys FOR VALUES WITH (MODULUS 4, REMAINDER {r})"
            ).format(
                p=sql.Identifier(schema, f"keys_p{r}"), s=sql.Identifier(schema), r=sql.Literal(r)
            )
        )
    async with opened(durable(postgres_db.dsn, schema)) as store:
        addrs = [SessionAddr("ns", f"s{i}") for i in range(12)]
        first = [KeyWrite("session", "x", b"1"), *(KeyWrite("pre-key", i, b"p") for i in "12")]
        second = [KeyWrite("session", "x", b"3"), KeyWrite("pre-key", "2", None)]
        for a in addrs:
            await store.write_keys(a, first)
            await store.write_keys(a, second)
            assert await store.get_keys(a, "session", ["x"]) == {"x": b"3"}
            assert await store.get_keys(a, "pre-key", ["1", "2"]) == {"1": b"p"}
        assert await store.clear_keys(addrs[0]) == 2
        assert await store.delete_session(addrs[1]) is True
    per_partition = await fetch(
        admin, f"SELECT tableoid::regclass::text, count(*) FROM {schema}.keys GROUP BY 1"
    )
    assert len(per_partition) > 1
    assert sum(n for _, n in per_partition) == 20
    # schema v3's fillfactor went to each partition (a partitioned parent refuses it)
    options = await fetch(
        admin,
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
        "AND relname LIKE 'keys%' AND relkind IN ('r', 'p') ORDER BY 1",
    )
    assert options == [("keys", None), *((f"keys_p{r}", ["fillfactor=80"]) for r in range(4))]


async def test_list_sessions_pages_in_byte_order(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    await admin.execute(
        f"INSERT INTO {schema}.sessions (namespace, session_id) "
        "SELECT 'ns', 's' || lpad(g::text, 5, '0') FROM generate_series(1, 1234) g".encode()
    )
    for sid in ("a", "B", "Z-1"):
        await store.save_creds(SessionAddr("ns", sid), b"c")
    await store.write_keys(SessionAddr("other", "x"), [KeyWrite("session", "1", b"1")])
    listed = [i async for i in store.list_sessions("ns")]
    ids = [i.session_id for i in listed]
    assert len(ids) == 1237
    assert ids[:3] == ["B", "Z-1", "a"]
    assert ids == sorted(ids)
    assert [i.creds_version for i in listed[:3]] == [1, 1, 1]
    everything = [(i.namespace, i.session_id) async for i in store.list_sessions()]
    assert everything == sorted(everything)
    assert everything[-1] == ("other", "x")
    assert len(everything) == 1238


# --- migrations ------------------------------------------------------------------------------


async def test_version_1_schema_upgrades_in_place(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    ident = sql.Identifier(schema)
    await admin.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    await admin.execute(
        sql.SQL("CREATE TABLE {}.meta (name text PRIMARY KEY, value text NOT NULL)").format(ident)
    )
    await admin.execute(sql.SQL(q.MIGRATIONS[1]).format(s=ident))  # a store at version 1
    await admin.execute(sql.SQL("INSERT INTO {}.meta VALUES ('schema_version', '1')").format(ident))
    await admin.execute(
        sql.SQL(
            "INSERT INTO {}.sessions (namespace, session_id, creds, version, fence) "
            "VALUES (%s, %s, %s, 3, %s)"
        ).format(ident),
        (ADDR.namespace, ADDR.session_id, b"c3", 7 << FENCE_SHIFT),
    )
    async with opened(durable(postgres_db.dsn, schema)) as store:
        assert await store.load_creds(ADDR) == CredsRecord(b"c3", 3)  # data kept
        fence = 7 << FENCE_SHIFT
        assert await store.apply_batch(
            ADDR, [KeyWrite("session", "a", b"1")], None, seq=1, fence=fence
        )
        assert not await store.apply_batch(ADDR, [], None, seq=1, fence=fence)
        with pytest.raises(errors.FencedError):
            await store.advance_fence(ADDR, fence - 1)
        assert await store.acquire_lease(ADDR, "p1", 1000) == 8  # above the recorded fence
    assert await fetch(admin, f"SELECT value FROM {schema}.meta WHERE name = 'schema_version'") == [
        (str(q.SCHEMA_VERSION),)
    ]
    rows = await fetch(admin, f"SELECT outbox_seq, fence FROM {schema}.sessions")
    assert rows == [(1, 7 << FENCE_SHIFT)]
    # version 3: the keys table leaves room for HOT updates
    assert await fetch(
        admin,
        "SELECT reloptions FROM pg_class c JOIN pg_namespace n ON "
        f"n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND "
        "c.relname = 'keys'",
    ) == [(["fillfactor=80"],)]


# --- tombstones (schema v4) -------------------------------------------------------------------


async def test_tombstone_is_the_emptied_row(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    a, never, plain = fresh(), fresh(), fresh()
    f5, f6, f7, f9 = (n << FENCE_SHIFT for n in (5, 6, 7, 9))
    await store.write_keys(a, [KeyWrite("session", "x", b"1")], fence=f5)
    await store.save_creds(a, b"c", fence=f5)
    assert await store.delete_session(a, fence=f6)
    assert await rows_of(admin, schema, a) == [(f6, True, None, 0, 0)]
    assert await fetch(admin, f"SELECT count(*) FROM {schema}.keys") == [(0,)]
    await store.advance_fence(never, f9)
    assert await rows_of(admin, schema, never) == [(f9, True, None, 0, 0)]
    # A session of a store without leases (fence 0) leaves nothing behind; nor does a no-op.
    await store.write_keys(plain, [KeyWrite("session", "x", b"1")])
    assert await store.delete_session(plain)
    assert await store.delete_session(fresh()) is False
    assert await fetch(admin, f"SELECT count(*) FROM {schema}.sessions") == [(2,)]
    # Revived by the holder of the fence: the same row, a new session.
    assert await store.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
    assert await rows_of(admin, schema, a) == [(f7, False, b"c2", 1, 0)]


async def test_version_3_schema_upgrades_to_tombstones(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    ident = sql.Identifier(schema)
    await admin.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    await admin.execute(
        sql.SQL("CREATE TABLE {}.meta (name text PRIMARY KEY, value text NOT NULL)").format(ident)
    )
    for version in (1, 2, 3):  # a store at version 3, as the previous release left it
        await admin.execute(sql.SQL(q.MIGRATIONS[version]).format(s=ident))
    await admin.execute(sql.SQL("INSERT INTO {}.meta VALUES ('schema_version', '3')").format(ident))
    a, b = fresh(), fresh()
    for addr in (a, b):
        await admin.execute(
            sql.SQL(
                "INSERT INTO {}.sessions (namespace, session_id, creds, version, fence) "
                "VALUES (%s, %s, %s, 3, %s)"
            ).format(ident),
            (addr.namespace, addr.session_id, b"c3", 7 << FENCE_SHIFT),
        )
    async with opened(durable(postgres_db.dsn, schema)) as store:
        assert await store.load_creds(a) == CredsRecord(b"c3", 3)  # data kept
        listed = [i.session_id async for i in store.list_sessions(NS)]
        assert sorted(listed) == sorted((a.session_id, b.session_id))
        assert await store.delete_session(a)
        with pytest.raises(errors.FencedError):
            await store.save_creds(a, b"stale", fence=(7 << FENCE_SHIFT) - 1)
        assert await store.bind_meta("encryption", "none") == "none"
    assert await fetch(admin, f"SELECT value FROM {schema}.meta WHERE name = 'schema_version'") == [
        (str(q.SCHEMA_VERSION),)
    ]
    assert q.SCHEMA_VERSION == 4


async def test_bind_meta_keeps_the_backends_own_names(store: pg.PostgresDurable) -> None:
    for name in ("schema_version", "store_id"):
        with pytest.raises(errors.InvalidInputError):
            await store.bind_meta(name, "x")
    assert await store.bind_meta("fingerprints", "a,b") == "a,b"
