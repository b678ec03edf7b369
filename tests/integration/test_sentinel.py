"""Redis Sentinel on real servers: 1 master + 1 replica + 3 sentinels (tests/_services/sentinel).

- A subset of the contract suite over ``redis+sentinel://`` URLs: the hybrid store's cache in
  write-through and write-behind modes, and the Redis-only durable tier.
- Opening: an unknown service is a ``ConfigError``, unreachable sentinels an
  ``UnavailableError``, passwords never in a message; ``check()`` names the topology.
- Staleness across a failover: the replica is frozen (SIGSTOP) while the store writes, so the
  promoted replica lacks the last cache update; the store must not serve the older cached
  value (the era check evicts it and reads the durable tier). Lease tokens the old master issued
  without replicating them are never issued again.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aredis

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends.redis import RedisCache, RedisDurable, RedisOptions
from tests._services.redis import _cli, free_port, start_redis, unique_prefix
from tests._services.sentinel import SERVICE, SentinelSet, sentinels
from tests.conftest import Backend
from tests.contract.test_creds import (  # noqa: F401 (collected here, over Sentinel)
    test_save_returns_increasing_versions,
    test_stale_expected_version_conflicts,
    test_use_auth_state_round_trip,
)
from tests.contract.test_keys import (  # noqa: F401
    test_all_shapes_in_one_set_survive_reopen,
    test_big_mixed_set_of_upserts_and_deletes_over_types,
    test_missing_ids_are_absent_not_none,
    test_multi_type_set_applies_every_type,
    test_none_deletes,
    test_overwrite_keeps_latest,
    test_pre_key_batch_of_812,
)
from tests.contract.test_leases import (  # noqa: F401
    test_reacquire_by_owner_gives_a_higher_token,
    test_renew_and_release_compare_owner_and_token,
    test_tokens_monotonic_across_delete_session,
)
from tests.contract.test_sessions import (  # noqa: F401
    test_clear_removes_keys_keeps_creds,
    test_delete_removes_creds_and_keys,
    test_list_sessions,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One Sentinel deployment for the contract subset (failover tests start their own)."""
    with sentinels(tmp_path_factory.mktemp("sentinel")) as d:
        yield d


def _cache(d: SentinelSet) -> str:
    return d.url(f"prefix={unique_prefix()}&ttl=600")


@pytest.fixture(params=["sentinel-wt", "sentinel-wb", "sentinel-redis"])
def backend(request: pytest.FixtureRequest, deployment: SentinelSet, tmp_path: Path) -> Backend:
    """The contract's ``backend`` fixture, over Sentinel only (overrides tests/conftest.py)."""
    sqlite = f"sqlite:///{tmp_path / 'store.db'}"
    if request.param == "sentinel-wt":
        return Backend("sentinel-wt", StoreConfig(durable=sqlite, cache=_cache(deployment)))
    if request.param == "sentinel-wb":
        config = StoreConfig(durable=sqlite, cache=_cache(deployment), write_mode="write-behind")
        return Backend("sentinel-wb", config)
    durable = deployment.url(f"prefix={unique_prefix()}")
    return Backend("sentinel-redis", StoreConfig(durable=durable, cache=None))


@asynccontextmanager
async def opened_store(config: StoreConfig) -> AsyncIterator[AuthStore]:
    store = AuthStore(config)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- opening -------------------------------------------------------------------------------


async def test_unknown_service_is_a_config_error(deployment: SentinelSet) -> None:
    url = deployment.url().replace(f"/{SERVICE}/", "/nosuchservice/")
    b = RedisDurable(RedisOptions(url, role="durable", op_timeout=3))
    with pytest.raises(errors.ConfigError, match="nosuchservice"):
        await b.open()


async def test_no_sentinel_reachable_is_unavailable() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/{SERVICE}"
    b = RedisDurable(RedisOptions(url, role="durable", op_timeout=2))
    with pytest.raises(errors.UnavailableError, match="sentinel"):
        await b.open()


async def test_passwords_are_not_echoed(deployment: SentinelSet) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    spw = f"spw-{uuid.uuid4().hex}"
    hosts = deployment.url().removeprefix("redis+sentinel://")
    url = f"redis+sentinel://app:{secret}@{hosts}?sentinel_password={spw}"
    b = RedisDurable(RedisOptions(url, role="durable", op_timeout=3))
    with pytest.raises(errors.StoreError) as info:
        await b.open()
    assert secret not in str(info.value)
    assert spw not in str(info.value)
    url = f"redis+sentinel://app:{secret}@{hosts}"  # sentinels fine, the master refuses
    b = RedisDurable(RedisOptions(url, role="durable", op_timeout=3))
    with pytest.raises(errors.UnavailableError) as info:
        await b.open()
    assert secret not in str(info.value)


async def test_check_reports_the_topology(deployment: SentinelSet) -> None:
    async with opened_store(StoreConfig(durable=deployment.url(f"prefix={unique_prefix()}"))) as st:
        health = next(t for t in (await st.check()).tiers if t.tier == "durable")
    assert health.ok, health
    assert deployment.master is not None
    assert f"sentinel service {SERVICE}, master 127.0.0.1:{deployment.master.port}" in (
        health.detail
    )
    assert "replicas 1 connected, 1 in sync" in health.detail
    assert "maxmemory-policy noeviction" in health.detail


# -- failover ------------------------------------------------------------------------------


@pytest.fixture
def own(tmp_path: Path) -> Iterator[SentinelSet]:
    """A deployment of the test's own (it fails over)."""
    with sentinels(tmp_path / "own") as d:
        yield d


def cut_off(d: SentinelSet) -> int:
    """Freeze the replica and drop its link, so it receives nothing more; its pid."""
    d.wait_synced()
    replica = d.replica()
    assert replica.proc is not None
    assert d.master is not None
    os.killpg(replica.proc.pid, signal.SIGSTOP)
    # A frozen process still gets what the kernel buffers for it: close the link as well.
    _cli(d.master.port, "CLIENT", "KILL", "TYPE", "replica")
    return replica.proc.pid


def thaw(pid: int) -> None:
    os.killpg(pid, signal.SIGCONT)


async def _raw(port: int, *args: str) -> object:
    client = aredis.Redis(host="127.0.0.1", port=port)
    try:
        reply: object = await client.execute_command(*args)  # type: ignore[no-untyped-call]
        return reply
    finally:
        await client.aclose()


async def test_promoted_replica_missing_the_last_update_is_not_served(
    own: SentinelSet, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'store.db'}",
        cache=own.url(f"prefix={prefix}&ttl=600"),
        l1_max_entries=0,  # every read asks Redis: what the promoted replica serves is tested
        op_timeout=3.0,
    )
    async with opened_store(config) as st:
        keys = st.session("s").keys
        key = f"{prefix}c:{{default|s}}:k:session"
        await keys.set({"session": {"a": b"one"}})
        assert await keys.get("session", ["a"]) == {"a": b"one"}
        assert own.master is not None
        cached_one = await _raw(own.master.port, "HGET", key, "a")
        assert cached_one is not None
        replica = cut_off(own)  # it misses what follows
        try:
            await keys.set({"session": {"a": b"two"}})  # durable, then the master's cache
            assert await _raw(own.master.port, "HGET", key, "a") != cached_one
            old = own.kill_master()
        finally:
            thaw(replica)
        new = own.wait_failover(old)
        # The promoted replica still caches the old value: without the era check it is served.
        assert await _raw(new.port, "HGET", key, "a") == cached_one
        assert await keys.get("session", ["a"]) == {"a": b"two"}
        assert isinstance(st.cache, RedisCache)
        assert st.cache.runner.era is not None
        assert st.cache.runner.era.changes == 1
        # Filled again from the durable tier in the new era, then served from the cache.
        assert await keys.get("session", ["a"]) == {"a": b"two"}
        assert await _raw(new.port, "HGET", key, "a") not in (None, cached_one)


async def test_tokens_the_old_master_did_not_replicate_are_not_issued_again(
    own: SentinelSet,
) -> None:
    cache = RedisCache(
        RedisOptions(own.url(f"prefix={unique_prefix()}"), role="cache", op_timeout=3)
    )
    await cache.open()
    try:
        addr = SessionAddr("ns", "s")
        t1 = await cache.acquire_lease(addr, "p1", 60_000)
        assert t1 is not None
        assert await cache.release_lease(addr, "p1", t1)
        replica = cut_off(own)
        try:
            t2 = await cache.acquire_lease(addr, "p2", 60_000)  # never replicated
            old = own.kill_master()
        finally:
            thaw(replica)
        own.wait_failover(old)
        t3 = await cache.acquire_lease(addr, "p3", 60_000)  # free on the new master
        assert t2 is not None
        assert t3 is not None
        assert t3 > t2, (t1, t2, t3)  # without the era jump: t3 == t2, two holders
    finally:
        await cache.close()


# -- standalone: a restart from an older file ---------------------------------------------


async def test_standalone_restart_from_an_older_snapshot_is_a_new_era(tmp_path: Path) -> None:
    """Same address, new process, data rolled back to an RDB snapshot (the epoch key with it,
    so only the era tells): the cached value older than the durable tier's is not served."""
    server = start_redis(tmp_path / "redis", "--dbfilename", "dump.rdb")
    try:
        prefix = unique_prefix()
        config = StoreConfig(
            durable=f"sqlite:///{tmp_path / 'store.db'}",
            cache=f"{server.url}?prefix={prefix}&ttl=600",
            l1_max_entries=0,
            op_timeout=3.0,
        )
        key = f"{prefix}c:{{default|s}}:k:session"
        async with opened_store(config) as st:
            keys = st.session("s").keys
            await keys.set({"session": {"a": b"one"}})
            assert await keys.get("session", ["a"]) == {"a": b"one"}
            cached_one = await _raw(server.port, "HGET", key, "a")
            await _raw(server.port, "SAVE")  # the snapshot a restart will load
            await keys.set({"session": {"a": b"two"}})
            server.stop()  # SIGKILL: the last write is not in the snapshot
            server.start()
            assert await _raw(server.port, "HGET", key, "a") == cached_one  # rolled back
            assert await keys.get("session", ["a"]) == {"a": b"two"}
            assert isinstance(st.cache, RedisCache)
            assert st.cache.runner.era is not None
            assert st.cache.runner.era.changes == 1
            health = next(t for t in (await st.check()).tiers if t.tier == "cache")
            assert "master changed 1x since open" in health.detail
    finally:
        server.stop()
