"""Session contract: addressing, isolation, clear/delete, listing, health, closed-store errors."""

from __future__ import annotations

import time
from typing import Any

import pytest

from baileys_store import AuthStore, SessionInfo, errors
from tests.conftest import Backend
from tests.contract.test_creds import node_creds


async def _listed(store: AuthStore, namespace: str) -> list[SessionInfo]:
    return [info async for info in store.list_sessions(namespace)]


async def test_namespaces_and_sessions_are_isolated(backend: Backend) -> None:
    ns_a, ns_b = backend.namespace, backend.namespace + "/other"
    creds = {n: node_creds() for n in ("a", "b", "c")}
    async with backend.open() as store:
        a = store.session("5511", namespace=ns_a)
        b = store.session("5511", namespace=ns_b)  # same session id, other tenant
        c = store.session("5522", namespace=ns_a)  # same tenant, other session
        for name, sess in (("a", a), ("b", b), ("c", c)):
            await sess.save_creds(creds[name])
            await sess.keys.set({"session": {"x.0": name.encode()}, "pre-key": {name: b"p"}})
        await b.save_creds(creds["b"])
        await a.keys.set({"session": {"x.0": None}})
    async with backend.open() as store:
        a = store.session("5511", namespace=ns_a)
        b = store.session("5511", namespace=ns_b)
        c = store.session("5522", namespace=ns_a)
        assert await a.keys.get("session", ["x.0"]) == {}
        assert await b.keys.get("session", ["x.0"]) == {"x.0": b"b"}
        assert await c.keys.get("session", ["x.0"]) == {"x.0": b"c"}
        assert await a.keys.get("pre-key", ["a", "b", "c"]) == {"a": b"p"}
        assert await b.keys.get("pre-key", ["a", "b", "c"]) == {"b": b"p"}
        assert [await s.creds_version() for s in (a, b, c)] == [1, 2, 1]
        assert (await a.load_creds()) == creds["a"]
        await b.keys.clear()
        assert await a.keys.get("pre-key", ["a"]) == {"a": b"p"}
        assert await c.keys.get("session", ["x.0"]) == {"x.0": b"c"}
        assert await b.delete()
        assert (await a.load_creds()) == creds["a"]
        assert await c.keys.get("pre-key", ["c"]) == {"c": b"p"}
        assert [i.session_id for i in await _listed(store, ns_a)] == ["5511", "5522"]
        assert await _listed(store, ns_b) == []


async def test_clear_removes_keys_keeps_creds(backend: Backend) -> None:
    creds = node_creds()
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        await sess.save_creds(creds)
        await sess.keys.set(
            {
                "session": {f"{n}.0": b"s" for n in range(20)},
                "pre-key": {n: {"public": b"p"} for n in range(50)},
                "app-state-sync-version": {"regular": {"version": 1}},
            }
        )
        await sess.keys.clear()
        assert await sess.keys.get("session", [f"{n}.0" for n in range(20)]) == {}
        await sess.keys.clear()  # clearing an empty key store is fine
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.keys.get("pre-key", list(range(50))) == {}
        assert await sess.keys.get("app-state-sync-version", ["regular"]) == {}
        assert await sess.load_creds() == creds
        assert await sess.creds_version() == 1
        assert [i.session_id for i in await _listed(store, backend.namespace)] == ["s1"]
        await sess.keys.set({"session": {"1.0": b"after"}})  # the store stays usable
        assert await sess.keys.get("session", ["1.0"]) == {"1.0": b"after"}


async def test_delete_removes_creds_and_keys(backend: Backend) -> None:
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.delete() is False  # nothing there yet
        await sess.save_creds(node_creds())
        await sess.keys.set({"session": {"a.0": b"A"}, "pre-key": {1: b"p"}})
        assert await sess.delete() is True
        assert await sess.load_creds() is None
        assert await sess.keys.get("session", ["a.0"]) == {}
        assert await sess.delete() is False
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.load_creds() is None
        assert await sess.creds_version() == 0
        assert await sess.keys.get("pre-key", [1]) == {}
        assert await _listed(store, backend.namespace) == []
        # A deleted session starts over at version 1.
        assert await sess.save_creds(node_creds(), expected_version=0) == 1


async def test_delete_of_keys_only_session(store: AuthStore, backend: Backend) -> None:
    sess = store.session("s1", namespace=backend.namespace)
    await sess.keys.set({"session": {"a.0": b"A"}})
    assert await sess.delete() is True
    assert await sess.keys.get("session", ["a.0"]) == {}


async def test_list_sessions(backend: Backend) -> None:
    before = time.time() - 5
    async with backend.open() as store:
        for sid in ("b-2", "a-1", "c-3"):
            await store.session(sid, namespace=backend.namespace).save_creds(node_creds())
        await store.session("a-1", namespace=backend.namespace).save_creds(node_creds())
        await store.session("d-keys-only", namespace=backend.namespace).keys.set(
            {"session": {"1.0": b"x"}}
        )
        await store.session("a-1", namespace=backend.namespace + "/x").save_creds(node_creds())
    async with backend.open() as store:
        listed = await _listed(store, backend.namespace)
        assert [(i.namespace, i.session_id, i.creds_version) for i in listed] == [
            (backend.namespace, "a-1", 2),
            (backend.namespace, "b-2", 1),
            (backend.namespace, "c-3", 1),
            (backend.namespace, "d-keys-only", 0),
        ]
        assert all(before <= i.updated_at <= time.time() + 5 for i in listed)
        other = await _listed(store, backend.namespace + "/x")
        assert [(i.session_id, i.creds_version) for i in other] == [("a-1", 1)]
        assert await _listed(store, backend.namespace + "-none") == []
        with pytest.raises(errors.InvalidInputError):
            await _listed(store, "bad namespace")


@pytest.mark.parametrize("bad", ["", "has space", "{tag}", "x" * 129, "-lead", "a\nb", 5, None])
async def test_bad_session_ids_are_rejected(store: AuthStore, backend: Backend, bad: Any) -> None:
    with pytest.raises(errors.InvalidInputError):
        store.session(bad, namespace=backend.namespace)


@pytest.mark.parametrize("bad", ["", "/lead", "has space", "{tag}", "x" * 129, "é", 5, None])
async def test_bad_namespaces_are_rejected(store: AuthStore, bad: Any) -> None:
    with pytest.raises(errors.InvalidInputError):
        store.session("s1", namespace=bad)


async def test_session_properties_and_jid_like_ids(store: AuthStore, backend: Backend) -> None:
    sid = "5511999887766:12@s.whatsapp.net"
    sess = store.session(sid, namespace=backend.namespace)
    assert (sess.namespace, sess.session_id) == (backend.namespace, sid)
    await sess.save_creds(node_creds())
    assert [i.session_id for i in await _listed(store, backend.namespace)] == [sid]


async def test_check_is_healthy(store: AuthStore) -> None:
    health = await store.check()
    assert health.status == "healthy"
    assert health.tiers
    assert all(t.ok for t in health.tiers)
    assert health.tiers[0].tier == "durable"
    expected = (["cache"] if store.cache is not None else []) + (
        ["outbox"] if store.config.outbox != "redis" else []  # a broker outbox is probed too
    )
    assert [t.tier for t in health.tiers[1:]] == expected


async def test_use_after_close_raises(backend: Backend) -> None:
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        await sess.keys.set({"session": {"a.0": b"A"}})
    calls: list[Any] = [
        lambda: sess.keys.get("session", ["a.0"]),
        lambda: sess.keys.set({"session": {"a.0": b"B"}}),
        sess.keys.clear,
        sess.load_creds,
        sess.creds_version,
        lambda: sess.save_creds(node_creds()),
        sess.delete,
        lambda: _listed(store, backend.namespace),
        store.check,
    ]
    for call in calls:
        with pytest.raises(errors.StoreClosedError):
            await call()
    await store.close()  # closing twice is fine
    async with backend.open() as reopened:  # and nothing was written after the close
        got = await reopened.session("s1", namespace=backend.namespace).keys.get("session", ["a.0"])
        assert got == {"a.0": b"A"}
