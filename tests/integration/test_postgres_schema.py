"""PostgreSQL schema on a real server: creation, partitions, migrations, tombstone rows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import sql

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import postgres as pg
from baileys_store.backends.postgres import _schema as q
from tests._services.postgres import PostgresDatabase
from tests.integration._backend_cases import assert_meta_names_reserved, fresh, opened
from tests.integration.test_postgres import ADDR, Admin, admin, durable, fetch, schema, store

__all__ = ["admin", "schema", "store"]  # fixtures, imported for pytest
NS = "clinic-1/tomb"


async def rows_of(conn: Admin, schema: str, a: SessionAddr) -> list[tuple[Any, ...]]:
    return await fetch(
        conn,
        f"SELECT fence, deleted, creds, version, outbox_seq FROM {schema}.sessions "
        "WHERE namespace = %s AND session_id = %s",
        a.namespace,
        a.session_id,
    )


async def at_version(conn: Admin, schema: str, version: int, *addrs: SessionAddr) -> None:
    """A schema as release ``version`` left it, with creds v3 at fence 7 for each of ``addrs``."""
    ident = sql.Identifier(schema)
    await conn.execute(
        sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.meta (name text PRIMARY KEY, value text NOT NULL);"
            "INSERT INTO {s}.meta VALUES ('schema_version', {v})"
        ).format(s=ident, v=sql.Literal(str(version)))
    )
    for step in range(1, version + 1):
        await conn.execute(sql.SQL(q.MIGRATIONS[step]).format(s=ident))
    for a in addrs:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.sessions (namespace, session_id, creds, version, fence) "
                "VALUES (%s, %s, %s, 3, %s)"
            ).format(ident),
            (a.namespace, a.session_id, b"c3", 7 << FENCE_SHIFT),
        )


async def keys_reloptions(conn: Admin, schema: str) -> list[tuple[Any, ...]]:
    """``(table, reloptions)`` of the keys table and its partitions."""
    return await fetch(
        conn,
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
        "AND relname LIKE 'keys%' AND relkind IN ('r', 'p') ORDER BY 1",
    )


async def schema_version(conn: Admin, schema: str) -> list[tuple[Any, ...]]:
    return await fetch(conn, f"SELECT value FROM {schema}.meta WHERE name = 'schema_version'")


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
    parts = [(f"keys_p{r}", ["fillfactor=80"]) for r in range(4)]
    assert await keys_reloptions(admin, schema) == [("keys", None), *parts]


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
    await at_version(admin, schema, 1, ADDR)
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
    assert await schema_version(admin, schema) == [(str(q.SCHEMA_VERSION),)]
    rows = await fetch(admin, f"SELECT outbox_seq, fence FROM {schema}.sessions")
    assert rows == [(1, 7 << FENCE_SHIFT)]
    # version 3: the keys table leaves room for HOT updates
    assert await keys_reloptions(admin, schema) == [("keys", ["fillfactor=80"])]


# --- tombstones (schema v4) -------------------------------------------------------------------


async def test_tombstone_is_the_emptied_row(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    a, never, plain = fresh(NS), fresh(NS), fresh(NS)
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
    assert await store.delete_session(fresh(NS)) is False
    assert await fetch(admin, f"SELECT count(*) FROM {schema}.sessions") == [(2,)]
    # Revived by the holder of the fence: the same row, a new session.
    assert await store.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
    assert await rows_of(admin, schema, a) == [(f7, False, b"c2", 1, 0)]


async def test_version_3_schema_upgrades_to_tombstones(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    a, b = fresh(NS), fresh(NS)
    await at_version(admin, schema, 3, a, b)  # as the previous release left it
    async with opened(durable(postgres_db.dsn, schema)) as store:
        assert await store.load_creds(a) == CredsRecord(b"c3", 3)  # data kept
        listed = [i.session_id async for i in store.list_sessions(NS)]
        assert sorted(listed) == sorted((a.session_id, b.session_id))
        assert await store.delete_session(a)
        with pytest.raises(errors.FencedError):
            await store.save_creds(a, b"stale", fence=(7 << FENCE_SHIFT) - 1)
        assert await store.bind_meta("encryption", "none") == "none"
    assert await schema_version(admin, schema) == [(str(q.SCHEMA_VERSION),)]
    assert q.SCHEMA_VERSION == 4


async def test_bind_meta_keeps_the_backends_own_names(store: pg.PostgresDurable) -> None:
    await assert_meta_names_reserved(store)
