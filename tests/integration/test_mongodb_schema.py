"""MongoDB layout and schema on a real server: documents, indexes, migrations, tombstones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.mongodb import MongoDurable
from baileys_store.backends.mongodb._schema import SCHEMA_VERSION, session_doc_id
from tests._services.mongo import MongoServer
from tests.integration._backend_cases import assert_meta_names_reserved, fresh
from tests.integration.test_mongodb import ADDR, opened, raw

pytestmark = pytest.mark.timeout(120)
NS = "clinic-1/tomb"


@pytest.fixture
async def mongo(mongo_server: MongoServer) -> AsyncIterator[MongoDurable]:
    async with opened(mongo_server.url()) as backend:
        yield backend


def session_doc(server: MongoServer, database: str, a: SessionAddr) -> dict[str, Any] | None:
    with raw(server) as client:
        fields = {"_id": 0, "fence": 1, "deleted": 1, "creds": 1, "version": 1, "outbox_seq": 1}
        return client[database]["bs_sessions"].find_one({"_id": session_doc_id(a)}, fields)


# -- layout, schema ---------------------------------------------------------------------------


async def test_ids_are_values_never_field_names(
    mongo: MongoDurable, mongo_server: MongoServer
) -> None:
    ids = ["5511@s.whatsapp.net:3", "a.b$c|d", "120363@g.us::5511::0", "AbC+/=="]
    await mongo.write_keys(ADDR, [KeyWrite("sender-key", i, i.encode() + b"\0\xff") for i in ids])
    with raw(mongo_server) as client:
        docs = list(client[mongo.database].bs_keys.find({}))
    assert len(docs) == len(ids)
    for doc in docs:
        assert set(doc) == {"_id", "namespace", "session_id", "type", "id", "value"}
        assert isinstance(doc["value"], bytes)
    assert sorted(d["id"] for d in docs) == sorted(ids)


async def test_schema_is_idempotent_without_ttl(mongo_server: MongoServer) -> None:
    url = mongo_server.url()
    async with opened(url) as b:
        await b.write_keys(ADDR, [KeyWrite("session", "1", b"x")])
        database = b.database
    async with opened(url):
        pass
    with raw(mongo_server) as client:
        db = client[database]
        assert db.bs_meta.find_one({"_id": "schema_version"}) == {
            "_id": "schema_version",
            "value": SCHEMA_VERSION,
        }
        for name in ("bs_keys", "bs_sessions", "bs_meta"):
            indexes = list(db[name].list_indexes())
            assert all("expireAfterSeconds" not in ix for ix in indexes), name
        assert {ix["name"] for ix in db.bs_keys.list_indexes()} == {"_id_", "bs_keys_session"}
        assert {ix["name"] for ix in db.bs_sessions.list_indexes()} == {"_id_", "bs_sessions_order"}
        db.bs_meta.update_one({"_id": "schema_version"}, {"$set": {"value": 99}})
    with pytest.raises(errors.UnavailableError, match="newer"):
        await MongoDurable(url).open()


async def test_list_sessions_pages_in_order(mongo: MongoDurable, mongo_server: MongoServer) -> None:
    await mongo.save_creds(SessionAddr("a", "z1"), b"c", expected_version=0)
    with raw(mongo_server) as client:  # 1,010 sessions in two namespaces: over two pages of 500
        client[mongo.database].bs_sessions.insert_many(
            {"_id": f"{ns}|{sid}", "namespace": ns, "session_id": sid}
            | {"version": 0, "fence": 0, "updated_at": 1.0}
            for ns in ("a", "b")
            for sid in (f"s{i:04d}" for i in range(505))
        )
    every = [(s.namespace, s.session_id) async for s in mongo.list_sessions()]
    only_b = [s.session_id async for s in mongo.list_sessions("b")]
    assert every == sorted(every)
    assert len(every) == 1011
    assert only_b == [f"s{i:04d}" for i in range(505)]


async def test_corrupt_documents_raise(mongo: MongoDurable, mongo_server: MongoServer) -> None:
    await mongo.write_keys(ADDR, [KeyWrite("session", "1", b"x")])
    await mongo.save_creds(ADDR, b"creds")
    with raw(mongo_server) as client:
        client[mongo.database].bs_keys.update_many({}, {"$set": {"value": "not-binary"}})
        client[mongo.database].bs_sessions.update_many({}, {"$set": {"creds": 42}})
    with pytest.raises(errors.CorruptDataError):
        await mongo.get_keys(ADDR, "session", ["1"])
    with pytest.raises(errors.CorruptDataError):
        await mongo.load_creds(ADDR)


# -- tombstones, migrations -------------------------------------------------------------------


async def test_tombstone_is_the_emptied_document(
    mongo: MongoDurable, mongo_server: MongoServer
) -> None:
    db = mongo.database
    a, never, plain = fresh(NS), fresh(NS), fresh(NS)
    f5, f6, f7, f9 = (n << FENCE_SHIFT for n in (5, 6, 7, 9))
    await mongo.write_keys(a, [KeyWrite("session", "x", b"1")], fence=f5)
    await mongo.save_creds(a, b"c", fence=f5)
    assert await mongo.apply_batch(a, [], None, seq=3, fence=f5)
    assert await mongo.delete_session(a, fence=f6)
    assert session_doc(mongo_server, db, a) == {"fence": f6, "deleted": True, "version": 0}
    await mongo.advance_fence(never, f9)
    assert session_doc(mongo_server, db, never) == {"fence": f9, "deleted": True, "version": 0}
    # A session of a mongo without leases (fence 0) leaves nothing behind.
    await mongo.write_keys(plain, [KeyWrite("session", "x", b"1")])
    assert await mongo.delete_session(plain)
    assert session_doc(mongo_server, db, plain) is None
    assert [i async for i in mongo.list_sessions()] == []  # every namespace of the database
    # Revived by the holder of the fence: the same document, a new session.
    assert await mongo.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
    assert session_doc(mongo_server, db, a) == {"fence": f7, "creds": b"c2", "version": 1}


async def test_version_1_database_upgrades_to_tombstones(mongo_server: MongoServer) -> None:
    url = mongo_server.url()
    a = fresh(NS)
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


async def test_bind_meta_keeps_the_backends_own_names(mongo: MongoDurable) -> None:
    await assert_meta_names_reserved(mongo)


# -- leases -------------------------------------------------------------------------------------


async def test_lease_expiry_is_the_servers_clock(
    mongo: MongoDurable, mongo_server: MongoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baileys_store.backends.mongodb import _leases  # noqa: PLC0415

    token = await mongo.acquire_lease(ADDR, "p1", 60_000)
    assert token is not None
    client = raw(mongo_server)
    leases = client[mongo.database]["bs_leases"]
    doc = leases.find_one({"namespace": ADDR.namespace, "session_id": ADDR.session_id})
    assert doc is not None
    assert 55_000 < doc["expires"] - time.time() * 1000 <= 61_000  # epoch ms from the server
    # A host clock an hour ahead changes nothing: the server still sees the lease live.
    skewed = type("Skewed", (), {"time": staticmethod(lambda: time.time() + 3600)})
    monkeypatch.setattr(_leases, "time", skewed)
    assert await mongo.acquire_lease(ADDR, "p2", 1000) is None
    assert await mongo.renew_lease(ADDR, "p1", token, 60_000)
    leases.update_one({"_id": doc["_id"]}, {"$set": {"expires": 0}})  # expired on the server
    assert not await mongo.renew_lease(ADDR, "p1", token, 1000)
    assert await mongo.acquire_lease(ADDR, "p2", 1000) == token + 1
    client.close()


async def test_lease_document_survives_delete_session(
    mongo: MongoDurable, mongo_server: MongoServer
) -> None:
    token = await mongo.acquire_lease(ADDR, "p1", 60_000)
    assert token is not None
    await mongo.write_keys(ADDR, [KeyWrite("session", "a", b"1")], fence=token << 32)
    assert await mongo.delete_session(ADDR)
    with raw(mongo_server) as client:
        leases = client[mongo.database]["bs_leases"]
        assert leases.count_documents({"session_id": ADDR.session_id, "token": token}) == 1
    assert await mongo.acquire_lease(ADDR, "p1", 1000) == token + 1
