"""The fence barrier, outbox batches and leases on every durable tier (and the Redis cache)."""

from __future__ import annotations

import asyncio

import pytest

from baileys_store import AuthStore, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends.base import FENCE_SHIFT, CredsRecord, LeaseBackend
from tests.conftest import Backend


def addr(backend: Backend, sid: str = "s1") -> SessionAddr:
    return SessionAddr(backend.namespace, sid)


def lease_backends(store: AuthStore) -> list[LeaseBackend]:
    found: list[LeaseBackend] = []
    for tier in (store.durable, store.cache):
        if isinstance(tier, LeaseBackend):
            found.append(tier)
    assert isinstance(store.durable, LeaseBackend)
    return found


async def test_advance_fence_rejects_older_writes(store: AuthStore, backend: Backend) -> None:
    a, durable = addr(backend), store.durable
    await durable.advance_fence(a, 5)  # a session that does not exist stays absent
    assert [i async for i in durable.list_sessions(backend.namespace)] == []
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=7)
    await durable.advance_fence(a, 9)
    with pytest.raises(errors.FencedError) as info:
        await durable.write_keys(a, [KeyWrite("session", "x", b"2")], fence=8)
    assert (info.value.token, info.value.current) == (8, 9)
    with pytest.raises(errors.FencedError):
        await durable.advance_fence(a, 8)
    assert await durable.get_keys(a, "session", ["x"]) == {"x": b"1"}


async def test_apply_batch_applies_once_and_atomically(store: AuthStore, backend: Backend) -> None:
    a, durable = addr(backend), store.durable
    writes = [KeyWrite("session", "x", b"1"), KeyWrite("pre-key", "1", b"p")]
    assert await durable.apply_batch(a, writes, CredsRecord(b"c", 4), seq=3)
    assert not await durable.apply_batch(a, [KeyWrite("session", "x", b"old")], None, seq=3)
    assert not await durable.apply_batch(a, [KeyWrite("session", "x", b"old")], None, seq=2)
    assert await durable.get_keys(a, "session", ["x"]) == {"x": b"1"}
    assert await durable.load_creds(a) == CredsRecord(b"c", 4)
    await durable.clear_keys(a)
    assert not await durable.apply_batch(a, [KeyWrite("session", "x", b"old")], None, seq=3)
    await durable.write_keys(a, [KeyWrite("session", "y", b"1")], fence=10)
    with pytest.raises(errors.FencedError):  # a fenced batch applies nothing
        await durable.apply_batch(a, [KeyWrite("session", "z", b"1")], None, seq=4, fence=9)
    assert await durable.get_keys(a, "session", ["z"]) == {}
    assert await durable.apply_batch(a, [KeyWrite("session", "x", None)], None, seq=4)
    assert await durable.get_keys(a, "session", ["x", "y"]) == {"y": b"1"}
    await durable.delete_session(a)
    assert await durable.apply_batch(a, [KeyWrite("session", "x", b"2")], None, seq=1)


async def test_leases_exclusive_expiring_monotonic(store: AuthStore, backend: Backend) -> None:
    for leases in lease_backends(store):
        a = addr(backend, f"lease-{type(leases).__name__}")
        t1 = await leases.acquire_lease(a, "p1", 300)
        assert t1 is not None
        assert await leases.acquire_lease(a, "p2", 300) is None
        assert await leases.renew_lease(a, "p1", t1, 300)
        assert not await leases.renew_lease(a, "p2", t1, 300)
        t2 = await leases.acquire_lease(a, "p1", 300)  # again by the owner: a newer token
        assert t2 is not None
        assert t2 > t1
        assert not await leases.renew_lease(a, "p1", t1, 300)
        await asyncio.sleep(0.45)  # expired
        assert not await leases.renew_lease(a, "p1", t2, 300)
        t3 = await leases.acquire_lease(a, "p2", 300)
        assert t3 is not None
        assert t3 > t2
        assert not await leases.release_lease(a, "p1", t2)
        assert await leases.release_lease(a, "p2", t3)
        t4 = await leases.acquire_lease(a, "p3", 300, floor=t3 + 10)
        assert t4 == t3 + 11


async def test_lease_tokens_stay_above_the_durable_fence(
    store: AuthStore, backend: Backend
) -> None:
    a, durable = addr(backend, "fenced"), store.durable
    assert isinstance(durable, LeaseBackend)
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=(40 << FENCE_SHIFT) | 3)
    token = await durable.acquire_lease(a, "p1", 1000)
    assert token == 41
    await durable.delete_session(a)
    again = await durable.acquire_lease(a, "p1", 1000)
    assert again is not None
    assert again > token  # monotonic across a delete


async def test_concurrent_acquirers_one_winner(store: AuthStore, backend: Backend) -> None:
    for leases in lease_backends(store):
        a = addr(backend, f"race-{type(leases).__name__}")
        tokens = await asyncio.gather(
            *(leases.acquire_lease(a, f"p{n}", 5000) for n in range(12)), return_exceptions=True
        )
        won = [t for t in tokens if isinstance(t, int)]
        assert len(won) == 1, tokens
        assert all(t is None or isinstance(t, errors.UnavailableError) for t in tokens
                   if not isinstance(t, int))  # fmt: skip
