"""Leases with fencing tokens on every durable tier and on the Redis cache tier."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from baileys_store import AuthStore
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.redis import RedisCache
from baileys_store.contracts import LeaseBackend
from tests.conftest import Backend


def lease_tiers(store: AuthStore) -> list[tuple[str, LeaseBackend]]:
    """Every tier of the store that issues leases (the durable always does)."""
    assert isinstance(store.durable, LeaseBackend)
    tiers: list[tuple[str, LeaseBackend]] = [("durable", store.durable)]
    if isinstance(store.cache, LeaseBackend):
        tiers.append(("cache", store.cache))
    return tiers


def fresh(backend: Backend, tier: str) -> SessionAddr:
    return SessionAddr(backend.namespace, f"{tier}-{uuid.uuid4().hex[:8]}")


async def test_acquire_held_expiry(store: AuthStore, backend: Backend) -> None:
    for tier, leases in lease_tiers(store):
        a = fresh(backend, tier)
        t1 = await leases.acquire_lease(a, "p1", 300)
        assert t1 is not None, tier
        assert t1 >= 1, tier
        assert await leases.acquire_lease(a, "p2", 300) is None, tier
        await asyncio.sleep(0.45)  # past the TTL: free for anyone
        assert not await leases.renew_lease(a, "p1", t1, 300), tier
        t2 = await leases.acquire_lease(a, "p2", 5000)
        assert t2 is not None, tier
        assert t2 > t1, tier
        assert await leases.acquire_lease(a, "p1", 5000) is None, tier


async def test_reacquire_by_owner_gives_a_higher_token(store: AuthStore, backend: Backend) -> None:
    for tier, leases in lease_tiers(store):
        a = fresh(backend, tier)
        tokens = [await leases.acquire_lease(a, "p1", 5000) for _ in range(4)]
        assert all(t is not None for t in tokens), tier
        assert tokens == sorted(set(tokens), key=lambda t: t or 0), (tier, tokens)
        last = tokens[-1]
        assert last is not None
        assert not await leases.renew_lease(a, "p1", tokens[0] or 0, 5000), tier  # superseded
        assert await leases.renew_lease(a, "p1", last, 5000), tier


async def test_renew_and_release_compare_owner_and_token(
    store: AuthStore, backend: Backend
) -> None:
    for tier, leases in lease_tiers(store):
        a = fresh(backend, tier)
        t = await leases.acquire_lease(a, "p1", 300)
        assert t is not None
        assert not await leases.renew_lease(a, "p2", t, 5000), tier
        assert not await leases.renew_lease(a, "p1", t + 1, 5000), tier
        assert not await leases.release_lease(a, "p2", t), tier
        assert not await leases.release_lease(a, "p1", t - 1), tier
        assert await leases.renew_lease(a, "p1", t, 5000), tier
        await asyncio.sleep(0.45)  # past the first TTL: the renewal kept it
        assert await leases.acquire_lease(a, "p2", 5000) is None, tier
        assert await leases.release_lease(a, "p1", t), tier
        assert not await leases.release_lease(a, "p1", t), tier  # already released
        assert not await leases.renew_lease(a, "p1", t, 5000), tier
        t2 = await leases.acquire_lease(a, "p2", 5000)
        assert t2 is not None, tier
        assert t2 > t, tier


async def test_tokens_stay_above_floor_and_durable_fence(
    store: AuthStore, backend: Backend
) -> None:
    for tier, leases in lease_tiers(store):
        a = fresh(backend, tier)
        assert await leases.acquire_lease(a, "p1", 5000, floor=100) == 101, tier
        assert await leases.acquire_lease(a, "p1", 5000, floor=50) == 102, tier  # floor below
    durable = store.durable
    assert isinstance(durable, LeaseBackend)
    a = fresh(backend, "fence")
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=(70 << FENCE_SHIFT) | 9)
    assert await durable.acquire_lease(a, "p1", 5000) == 71
    await durable.advance_fence(a, 90 << FENCE_SHIFT)
    assert await durable.acquire_lease(a, "p1", 5000, floor=80) == 91


async def test_tokens_monotonic_across_delete_session(store: AuthStore, backend: Backend) -> None:
    durable = store.durable
    assert isinstance(durable, LeaseBackend)
    a = fresh(backend, "deleted")
    t1 = await durable.acquire_lease(a, "p1", 5000)
    assert t1 is not None
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=t1 << FENCE_SHIFT)
    assert await durable.release_lease(a, "p1", t1)
    assert await durable.delete_session(a)
    t2 = await durable.acquire_lease(a, "p2", 5000)
    assert t2 is not None
    assert t2 > t1
    if store.cache is not None:
        await store.cache.drop(a, token=None)
        for _, leases in lease_tiers(store)[1:]:
            c1 = await leases.acquire_lease(a, "p1", 5000)
            assert c1 is not None
            await store.cache.drop(a, token=None)
            assert await leases.release_lease(a, "p1", c1)
            c2 = await leases.acquire_lease(a, "p3", 5000)
            assert c2 is not None
            assert c2 > c1


@pytest.mark.parametrize("contenders", [20])
async def test_concurrent_acquirers_exactly_one_wins(
    store: AuthStore, backend: Backend, contenders: int
) -> None:
    for tier, leases in lease_tiers(store):
        a = fresh(backend, tier)
        tokens = await asyncio.gather(
            *(leases.acquire_lease(a, f"p{n}", 5000) for n in range(contenders))
        )
        won = [t for t in tokens if t is not None]
        assert len(won) == 1, (tier, tokens)
        # Released: a second round still has one winner, with a higher token.
        owner = f"p{tokens.index(won[0])}"
        assert await leases.release_lease(a, owner, won[0]), tier
        again = await asyncio.gather(
            *(leases.acquire_lease(a, f"q{n}", 5000) for n in range(contenders))
        )
        won2 = [t for t in again if t is not None]
        assert len(won2) == 1, (tier, again)
        assert won2[0] > won[0], (tier, again)


async def _cached(cache: RedisCache, a: SessionAddr) -> tuple[bool, bool]:
    """Whether the cache still holds the session's key hash and its creds."""
    client, base = cache.runner.client, cache.runner.base(a)
    has_keys = bool(await client.exists(base + "k:session"))
    has_creds = bool(await client.hexists(base + "m", "creds"))
    return has_keys, has_creds


async def test_redis_cache_lease_drops_cached_data_unless_outbox_pending(
    backend_redis_cache: Backend,
) -> None:
    async with backend_redis_cache.open() as store:
        await _cache_reset(store, backend_redis_cache)


async def _cache_reset(store: AuthStore, backend: Backend) -> None:
    cache = store.cache
    assert isinstance(cache, RedisCache)
    for pending in (False, True):
        a = fresh(backend, f"reset-{pending}")
        await cache.update_keys(a, [KeyWrite("session", "x", b"1")], token=None)
        await cache.put_creds_guarded(a, CredsRecord(b"c", 3), token=None)
        assert await _cached(cache, a) == (True, True)
        client, base = cache.runner.client, cache.runner.base(a)
        await client.hset(base + "b", mapping={"os": 5, "oa": 5 - int(pending)})
        token = await cache.acquire_lease(a, "p1", 5000)
        assert token is not None
        assert await _cached(cache, a) == (pending, pending)
        assert await client.hmget(base + "b", ["os", "oa"]) == [b"5", b"%d" % (5 - pending)]
        await client.hset(base + "b", "oa", 5)  # drained: the next holder starts cold
        await cache.update_keys(a, [KeyWrite("session", "y", b"2")], token=None)
        again = await cache.acquire_lease(a, "p1", 5000)
        assert again is not None
        assert again > token
        assert await _cached(cache, a) == (False, False)
