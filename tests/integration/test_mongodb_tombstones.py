"""MongoDB fence tombstones (schema v2) on a real server: layout, races, upgrade from v1."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends._mongo_schema import SCHEMA_VERSION, session_doc_id
from tests._services.mongo import MongoServer
from tests.integration.test_mongodb import opened, raw

pytestmark = pytest.mark.timeout(120)
NS = "clinic-1/tomb"


def fresh() -> SessionAddr:
    return SessionAddr(NS, f"s-{uuid.uuid4().hex[:8]}")


def session_doc(server: MongoServer, database: str, a: SessionAddr) -> dict[str, Any] | None:
    with raw(server) as client:
        fields = {"_id": 0, "fence": 1, "deleted": 1, "creds": 1, "version": 1, "outbox_seq": 1}
        return client[database]["bs_sessions"].find_one({"_id": session_doc_id(a)}, fields)


async def test_tombstone_is_the_emptied_document_and_listings_skip_it(
    mongo_server: MongoServer,
) -> None:
    async with opened(mongo_server.url()) as store:
        db = store.database
        a, never, plain = fresh(), fresh(), fresh()
        f5, f6, f7, f9 = (n << FENCE_SHIFT for n in (5, 6, 7, 9))
        await store.write_keys(a, [KeyWrite("session", "x", b"1")], fence=f5)
        await store.save_creds(a, b"c", fence=f5)
        assert await store.apply_batch(a, [], None, seq=3, fence=f5)
        assert await store.delete_session(a, fence=f6)
        assert session_doc(mongo_server, db, a) == {"fence": f6, "deleted": True, "version": 0}
        assert not await store.delete_session(a, fence=f6)  # a tombstone is not a session
        await store.advance_fence(never, f9)
        assert session_doc(mongo_server, db, never) == {"fence": f9, "deleted": True, "version": 0}
        # A session of a store without leases (fence 0) leaves nothing behind.
        await store.write_keys(plain, [KeyWrite("session", "x", b"1")])
        assert await store.delete_session(plain)
        assert session_doc(mongo_server, db, plain) is None
        assert await store.delete_session(fresh()) is False
        assert [i async for i in store.list_sessions(NS)] == []
        assert [i async for i in store.list_sessions()] == []
        assert await store.acquire_lease(a, "p1", 5000) == 7  # floored on the tombstone's fence
        assert await store.acquire_lease(never, "p1", 5000) == 10
        # Revived by the holder of the fence: a new session (version chain restarts).
        assert await store.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
        assert session_doc(mongo_server, db, a) == {"fence": f7, "creds": b"c2", "version": 1}
        assert [i.session_id async for i in store.list_sessions(NS)] == [a.session_id]
        # The outbox sequence restarted with the session: its first batch applies.
        assert await store.apply_batch(
            never, [KeyWrite("session", "y", b"2")], None, seq=1, fence=f9 + 1
        )
        assert await store.get_keys(never, "session", ["y"]) == {"y": b"2"}


async def test_barrier_and_stale_writers_racing_on_a_missing_session(
    mongo_server: MongoServer,
) -> None:
    """Two clients (processes): the stale writer's upsert and the barrier's collide on ``_id``."""
    url = mongo_server.url()
    stale, barrier = 5 << FENCE_SHIFT, 6 << FENCE_SHIFT
    async with opened(url) as old, opened(url) as new:
        for _ in range(3):
            addrs = [fresh() for _ in range(4)]
            calls: list[Any] = []
            for a in addrs:
                calls += [
                    old.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=stale),
                    old.save_creds(a, b"stale", fence=stale),
                    old.apply_batch(a, [KeyWrite("pre-key", "1", b"s")], None, seq=1, fence=stale),
                    new.advance_fence(a, barrier),
                ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            for r in results:
                assert r is None or isinstance(r, (bool, int, errors.FencedError)), r
            for a in addrs:  # whatever order they ran in, the barrier holds from now on
                with pytest.raises(errors.FencedError) as info:
                    await old.write_keys(a, [KeyWrite("session", "y", b"late")], fence=stale + 1)
                assert info.value.current == barrier
                assert await new.get_keys(a, "session", ["y"]) == {}


async def test_version_1_database_upgrades_to_tombstones(mongo_server: MongoServer) -> None:
    url = mongo_server.url()
    a = fresh()
    async with opened(url) as first:
        database = first.database
    with raw(mongo_server) as client:  # as the previous release left it
        db = client[database]
        db.bs_meta.update_one({"_id": "schema_version"}, {"$set": {"value": 1}})
        now = time.time()
        db.bs_sessions.insert_one(
            {
                "_id": session_doc_id(a),
                "namespace": a.namespace,
                "session_id": a.session_id,
                "creds": b"c3",
                "version": 3,
                "fence": 7 << FENCE_SHIFT,
                "created_at": now,
                "updated_at": now,
            }
        )
    async with opened(url) as store:
        assert await store.load_creds(a) == CredsRecord(b"c3", 3)  # data kept
        assert [i.session_id async for i in store.list_sessions(NS)] == [a.session_id]
        assert await store.delete_session(a)
        with pytest.raises(errors.FencedError):
            await store.save_creds(a, b"stale", fence=(7 << FENCE_SHIFT) - 1)
        assert await store.load_creds(a) is None
    with raw(mongo_server) as client:
        meta = client[database].bs_meta.find_one({"_id": "schema_version"})
    assert meta == {"_id": "schema_version", "value": SCHEMA_VERSION}
    assert SCHEMA_VERSION == 2


async def test_bind_meta_keeps_the_backends_own_names(mongo_server: MongoServer) -> None:
    async with opened(mongo_server.url()) as store:
        for name in ("schema_version", "store_id"):
            with pytest.raises(errors.InvalidInputError):
                await store.bind_meta(name, "x")
        assert await store.bind_meta("fingerprints", "a,b") == "a,b"
        store_id = store.store_id
    async with opened(mongo_server.url(store.database)) as again:
        assert again.store_id == store_id
        assert await again.bind_meta("fingerprints", "c") == "a,b"
