"""PostgreSQL fence tombstones (schema v4) on a real server: layout, races, upgrade from v3."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from psycopg import sql

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import _pg_schema as q
from baileys_store.backends import postgres as pg
from tests._services.postgres import PostgresDatabase
from tests.integration.test_postgres import Admin, admin, durable, fetch, opened, schema, store

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


async def test_tombstone_is_the_emptied_row_and_listings_skip_it(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    a, never, plain = fresh(), fresh(), fresh()
    f5, f6, f7, f9 = (n << FENCE_SHIFT for n in (5, 6, 7, 9))
    await store.write_keys(a, [KeyWrite("session", "x", b"1")], fence=f5)
    await store.save_creds(a, b"c", fence=f5)
    assert await store.delete_session(a, fence=f6)
    assert await rows_of(admin, schema, a) == [(f6, True, None, 0, 0)]
    assert await fetch(admin, f"SELECT count(*) FROM {schema}.keys") == [(0,)]
    assert not await store.delete_session(a, fence=f6)  # a tombstone is not a session
    await store.advance_fence(never, f9)
    assert await rows_of(admin, schema, never) == [(f9, True, None, 0, 0)]
    # A session of a store without leases (fence 0) leaves nothing behind.
    await store.write_keys(plain, [KeyWrite("session", "x", b"1")])
    assert await store.delete_session(plain)
    assert await store.delete_session(fresh()) is False
    assert await fetch(admin, f"SELECT count(*) FROM {schema}.sessions") == [(2,)]
    assert [i async for i in store.list_sessions(NS)] == []
    assert await store.acquire_lease(a, "p1", 5000) == 7  # floored on the tombstone's fence
    assert await store.acquire_lease(never, "p1", 5000) == 10
    # Revived by the holder of the fence: a new session (version chain restarts).
    assert await store.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
    assert await rows_of(admin, schema, a) == [(f7, False, b"c2", 1, 0)]
    assert [i.session_id async for i in store.list_sessions(NS)] == [a.session_id]


async def test_barrier_and_stale_writers_racing_on_a_missing_session(
    store: pg.PostgresDurable,
) -> None:
    """The stale writer's insert and the barrier's tombstone collide on the row: never both."""
    stale, barrier = 5 << FENCE_SHIFT, 6 << FENCE_SHIFT
    for _ in range(10):
        addrs = [fresh() for _ in range(8)]
        writes: list[Any] = []
        for a in addrs:
            writes += [
                store.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=stale),
                store.save_creds(a, b"stale", fence=stale),
                store.apply_batch(a, [KeyWrite("pre-key", "1", b"s")], None, seq=1, fence=stale),
                store.advance_fence(a, barrier),
            ]
        results = await asyncio.gather(*writes, return_exceptions=True)
        for r in results:
            assert r is None or isinstance(r, (int, errors.FencedError)), r
        for a in addrs:  # whatever order they ran in, the barrier holds from now on
            with pytest.raises(errors.FencedError) as info:
                await store.write_keys(a, [KeyWrite("session", "y", b"late")], fence=stale + 1)
            assert info.value.current == barrier
            assert await store.get_keys(a, "session", ["y"]) == {}


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
