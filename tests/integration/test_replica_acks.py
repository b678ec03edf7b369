"""``cache_replica_acks``: write-behind steps and lease changes wait for ``WAIT n`` (real servers).

A master with one loopback replica (and, for the routing proof, a 3-master + 3-replica Cluster):
a write the replica acknowledged is on the replica when the call returns; a replica that does not
answer (SIGSTOP) turns the write into an ``UnavailableError`` within ``op_timeout``; ``n = 0``
sends no ``WAIT`` at all.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.redis import RedisCache
from baileys_store.bench._ha import replica_acks_bench
from tests._services.redis import RedisServer, _cli, unique_prefix, with_query
from tests._services.replicas import (
    ReplicatedCluster,
    ReplicatedRedis,
    info,
    start_replicated,
    start_replicated_cluster,
)
from tests.integration._backend_cases import assert_not_leaked, opened
from tests.integration.test_hybrid import ADDR, SID, durable_value, flaky_store, redis_cache

OP_TIMEOUT = 1.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def replicated() -> Iterator[ReplicatedRedis]:
    """A master with one replica, for the whole module."""
    servers = start_replicated(1)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def hacluster() -> Iterator[ReplicatedCluster]:
    """A 3-master + 3-replica Cluster, for the routing test."""
    cluster = start_replicated_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP) for the block: it keeps its connections, answers nothing."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.proc.pid, signal.SIGCONT)


def wait_calls(port: int) -> int:
    """How many ``WAIT`` commands the server on ``port`` has run."""
    for line in _cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def store_on(url: str, tmp_path: Path, acks: int, **cfg: Any) -> AuthStore:
    """A write-behind store (worker off) over SQLite with the cache at ``url``."""
    cache = with_query(url, prefix=unique_prefix(), ttl="600")
    return AuthStore(
        StoreConfig(
            durable=f"sqlite:///{tmp_path / 'store.db'}",
            cache=cache,
            write_mode="write-behind",
            outbox_worker=False,
            cache_replica_acks=acks,
            op_timeout=OP_TIMEOUT,
            **cfg,
        )
    )


def cached_blob(store: AuthStore, key_id: str) -> tuple[str, str]:
    """The key's ``k:session`` hash name and field, for reading a replica directly."""
    return redis_cache(store).runner.base(ADDR) + "k:session", key_id


async def test_acknowledged_write_is_on_the_replica(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    async with opened(store_on(replicated.url, tmp_path, 1)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v0"}})  # takes the lease, loads the scripts
        before = wait_calls(replicated.master.port)
        await keys.set({"session": {"1.0": b"v1"}})
        assert wait_calls(replicated.master.port) - before == 1  # in the write's round trip
        key, field = cached_blob(store, "1.0")
        on_master = await redis_cache(store).runner.client.hget(key, field)
        assert on_master
        # Read on the replica right away: WAIT returned only once it had the write.
        port = replicated.replicas[0].port
        assert _replica_hget(port, key, field, cluster=False) == on_master
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v1"}


async def test_silent_replica_fails_the_write_within_op_timeout(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    async with opened(store_on(replicated.url, tmp_path, 1)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v1"}})  # the lease is taken while it answers
        with paused(replicated.replicas[0]):
            start = time.monotonic()
            with pytest.raises(errors.UnavailableError, match="0 of 1 replica") as err:
                await keys.set({"session": {"1.0": b"v2"}})
            elapsed = time.monotonic() - start
        assert "wb_keys" in str(err.value)
        assert OP_TIMEOUT * 0.5 < elapsed < OP_TIMEOUT + 0.5
        # The replica is back: writes are acknowledged again.
        await keys.set({"session": {"1.0": b"v3"}})
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v3"}


async def test_more_acks_than_replicas_is_unavailable(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    async with opened(store_on(replicated.url, tmp_path, 2)) as store:
        with pytest.raises(errors.UnavailableError, match="1 of 2 replica"):
            await store.session(SID).keys.set({"session": {"1.0": b"v1"}})


async def test_creds_save_waits_too(replicated: ReplicatedRedis, tmp_path: Path) -> None:
    async with opened(store_on(replicated.url, tmp_path, 1)) as store:
        session = store.session(SID)
        await session.save_creds({"registrationId": 7})
        with (
            paused(replicated.replicas[0]),
            pytest.raises(errors.UnavailableError, match=r"wb_creds.*0 of 1"),
        ):
            await session.save_creds({"registrationId": 8})


async def test_no_acks_sends_no_wait(replicated: ReplicatedRedis, tmp_path: Path) -> None:
    async with opened(store_on(replicated.url, tmp_path, 0)) as store:
        before = wait_calls(replicated.master.port)
        await store.session(SID).keys.set({"session": {"1.0": b"v1"}})
        await store.session(SID).save_creds({"registrationId": 7})
        assert wait_calls(replicated.master.port) == before


async def _lease_cache(url: str, tmp_path: Path, acks: int) -> RedisCache:
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'l.db'}",
        cache=with_query(url, prefix=unique_prefix()),
        cache_replica_acks=acks,
        op_timeout=OP_TIMEOUT,
    )
    cache = make_cache(config)
    assert isinstance(cache, RedisCache)
    await cache.open()
    return cache


async def test_lease_changes_wait_for_the_replica(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    cache = await _lease_cache(replicated.url, tmp_path, 1)
    try:
        warm = SessionAddr("default", "warm-up")  # loads the three scripts
        first = await cache.acquire_lease(warm, "a", 5000)
        assert first is not None
        assert await cache.renew_lease(warm, "a", first, 5000)
        assert await cache.release_lease(warm, "a", first)
        before = wait_calls(replicated.master.port)
        token = await cache.acquire_lease(ADDR, "a", 5000)
        assert token is not None
        assert await cache.renew_lease(ADDR, "a", token, 5000)
        assert await cache.acquire_lease(ADDR, "b", 5000) is None  # held by a
        assert await cache.release_lease(ADDR, "a", token)
        assert wait_calls(replicated.master.port) - before == 4
        # The lease hash is on the replica: the release deleted it there too.
        lease_key = cache.runner.base(ADDR) + "l"
        assert replicated.replica_cmd(0, "EXISTS", lease_key) == "0"
        token = await cache.acquire_lease(ADDR, "a", 5000)
        assert token is not None
        assert replicated.replica_cmd(0, "HGET", lease_key, "o") == "a"
        changes: list[Callable[[], Awaitable[object]]] = [
            lambda: cache.renew_lease(ADDR, "a", token, 5000),
            lambda: cache.release_lease(ADDR, "a", token),
            lambda: cache.acquire_lease(SessionAddr("default", "other"), "a", 5000),
        ]
        with paused(replicated.replicas[0]):
            for change in changes:
                with pytest.raises(errors.UnavailableError, match="lease: 0 of 1"):
                    await change()
    finally:
        await cache.close()


async def test_unacknowledged_lease_fails_the_first_write(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    async with opened(store_on(replicated.url, tmp_path, 1)) as store:
        with (
            paused(replicated.replicas[0]),
            pytest.raises(errors.UnavailableError, match="acquire_lease: 0 of 1"),
        ):
            await store.session(SID).keys.set({"session": {"1.0": b"v1"}})


async def test_the_message_never_holds_the_password(tmp_path: Path) -> None:
    servers = start_replicated(1)
    try:
        secret = "s3cr3t-Pw-9"
        _cli(servers.replicas[0].port, "CONFIG", "SET", "masterauth", secret)
        _cli(servers.master.port, "CONFIG", "SET", "requirepass", secret)
        url = f"redis://:{secret}@127.0.0.1:{servers.master.port}/0"
        async with opened(store_on(url, tmp_path, 2)) as store:
            with pytest.raises(errors.UnavailableError) as err:
                await store.session(SID).keys.set({"session": {"1.0": b"v1"}})
        assert "1 of 2" in str(err.value)
        assert_not_leaked(err.value, secret)
    finally:
        servers.stop()


def _replica_hget(port: int, key: str, field: str, *, cluster: bool = True) -> bytes | None:
    """``HGET`` on a replica itself (in a Cluster after ``READONLY``, on the same connection)."""
    client = redis.Redis(host="127.0.0.1", port=port, single_connection_client=True)
    try:
        if cluster:
            client.execute_command("READONLY")  # type: ignore[no-untyped-call]
        value = client.hget(key, field)
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        client.close()


async def test_cluster_wait_goes_to_the_sessions_node(
    hacluster: ReplicatedCluster, tmp_path: Path
) -> None:
    """WAIT follows the script on its node's connection, and only there."""
    async with opened(store_on(hacluster.url, tmp_path, 1)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v1"}})
        key, field = cached_blob(store, "1.0")
        owner = hacluster.slot_owner(hacluster.keyslot(key))
        replica = hacluster.replica_of(owner)
        assert _replica_hget(replica.port, key, field)
        # Its own replica silent: the write is not acknowledged (a WAIT on any other
        # connection would have counted the silent replica's old offset and passed).
        with paused(replica), pytest.raises(errors.UnavailableError, match="0 of 1"):
            await keys.set({"session": {"1.0": b"v2"}})
        # Another shard's replica silent: nothing to do with this session's slot.
        other = next(
            n for n in hacluster.nodes if n is not replica and info(n.port)["role"] == "slave"
        )
        with paused(other):
            await keys.set({"session": {"1.0": b"v3"}})
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v3"}


async def test_cluster_write_redirected_by_ask_or_moved_is_not_acknowledged(
    hacluster: ReplicatedCluster, tmp_path: Path
) -> None:
    """The session's slot migrates to another master behind the client's back. A script that
    followed the ASK or MOVED would run on another connection, where the WAIT sent to the old
    owner proves nothing: the write is reported unavailable instead (it did not run); the next
    write goes to the new owner, acknowledged."""
    async with opened(store_on(hacluster.url, tmp_path, 1)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v1"}})
        key, field = cached_blob(store, "1.0")
        slot = hacluster.keyslot(key)
        owner = hacluster.slot_owner(slot)
        target = next(
            n for n in hacluster.nodes if n is not owner and info(n.port).get("role") == "master"
        )
        # A migration in progress: the old owner answers ASK, the script must not follow it.
        source = hacluster.begin_move(slot, target)
        with pytest.raises(errors.UnavailableError, match=r"slot is moving.*AskError"):
            await keys.set({"session": {"1.0": b"v2"}})
        # Migrated: the old owner answers MOVED (the client's table is stale).
        hacluster.finish_move(slot, source, target)
        with pytest.raises(errors.UnavailableError, match=r"slot is moving.*MovedError"):
            await keys.set({"session": {"1.0": b"v3"}})
        await keys.set({"session": {"1.0": b"v4"}})  # the table was patched: the new owner
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v4"}
        assert _replica_hget(hacluster.replica_of(target).port, key, field)


async def test_bench_measures_both_settings(replicated: ReplicatedRedis) -> None:
    """The bench function (bench/_ha.py) runs both settings against a given master."""
    got = await replica_acks_bench(replicated.url, rounds=2, ops=20, sessions=2)
    assert got["acks_0"]["n"] == got["acks_1"]["n"] == 40
    assert [sorted(r) for r in got["rounds"]] == [["acks_0", "acks_1", "round"]] * 2
    assert got["acks_1"]["p50"] > 0


async def test_unacknowledged_buffered_write_never_lands_after_a_later_write(
    replicated: ReplicatedRedis, tmp_path: Path
) -> None:
    """Write-through buffering a durable outage: a buffered append the replica did not
    acknowledge is in the master's outbox; a later acknowledged write must still win."""
    store, durable, _ = flaky_store(
        replicated.master, tmp_path, cache_replica_acks=1, op_timeout=OP_TIMEOUT
    )
    async with opened(store):
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v1"}})
        durable.fail_with = errors.UnavailableError("durable down")
        with (
            paused(replicated.replicas[0]),
            pytest.raises(errors.UnavailableError, match="0 of 1"),
        ):
            await keys.set({"session": {"1.0": b"v2"}})
        durable.fail_with = None
        await keys.set({"session": {"1.0": b"v3"}})  # acknowledged
        await store.drain_outbox()
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v3"}
        assert await durable_value(store, "session", "1.0") == b"v3"
