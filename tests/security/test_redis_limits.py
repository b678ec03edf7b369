"""Large calls on Redis, and a server configured to evict what the store keeps.

One call of many ids must not hold Redis (single-threaded) for every other tenant: reads, fills
and write-through updates run as commands of at most 5,000 ids. Durable writes and write-behind
appends stay one script each, so a call is still all-or-nothing (and one outbox entry). A
``maxmemory-policy`` that can evict keys without a TTL is reported at open and by ``check()``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baileys_store import AuthStore, StoreConfig
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends.redis import RedisCache, RedisDurable, RedisOptions
from tests._services.redis import RedisServer, start_redis, unique_prefix, with_query
from tests.conftest import Backend
from tests.creds_data import key_pair

N = 12_001  # three chunks of 5,000 and one id more
CHUNK = 5000


@pytest.fixture(params=["redis", "redis-cluster", "redis-cache", "hybrid-wb"])
def large_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue("backend_" + request.param.replace("-", "_"))
    return backend


async def test_large_set_get_delete_across_chunks(large_backend: Backend) -> None:
    ids = [str(i) for i in range(N)]
    first = {i: key_pair() for i in ids}
    async with large_backend.open() as store:
        keys = store.session("big", namespace=large_backend.namespace).keys
        await keys.set({"pre-key": first})
        got = await keys.get("pre-key", ids)
        assert got.keys() == first.keys()
        assert all(got[i] == first[i] for i in ids)
        # One call that deletes every other id and rewrites the rest, across every boundary.
        second = {i: key_pair() for i in ids[1::2]}
        await keys.set({"pre-key": {**dict.fromkeys(ids[::2]), **second}})
        got = await keys.get("pre-key", ids)
        assert got.keys() == second.keys()
        assert all(got[i] == second[i] for i in second)
        await store.drain_outbox()
    async with large_backend.open() as store:  # and the durable tier holds the same
        durable = await store.durable.get_keys(
            SessionAddr(large_backend.namespace, "big"), "pre-key", ids
        )
        assert sorted(durable, key=int) == ids[1::2]
        keys = store.session("big", namespace=large_backend.namespace).keys
        await keys.set({"pre-key": dict.fromkeys(ids)})
        assert await keys.get("pre-key", ids) == {}


async def test_write_behind_large_set_is_one_outbox_entry(backend_hybrid_wb: Backend) -> None:
    async with backend_hybrid_wb.open() as store:
        shared = store._engine.shared
        assert shared is not None
        addr = SessionAddr(backend_hybrid_wb.namespace, "wb")
        keys = store.session("wb", namespace=backend_hybrid_wb.namespace).keys
        await keys.set({"pre-key": {str(i): key_pair() for i in range(N)}})
        first, _, _ = await shared.outbox.outbox_counters(addr)
        await keys.set({"pre-key": dict.fromkeys(str(i) for i in range(N))})
        second, _, _ = await shared.outbox.outbox_counters(addr)
        assert second == first + 1  # one sequence number: one entry for the whole call
        assert await store.drain_outbox() >= 0
        assert await store.durable.get_keys(addr, "pre-key", [str(i) for i in range(N)]) == {}


# Servers of our own: a slow log of every command, an evicting policy, CONFIG disabled.


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RedisServer]]:
    base = Path(tempfile.mkdtemp(prefix="bs-redis-limits-"))
    started: dict[str, RedisServer] = {}
    try:
        started["log"] = start_redis(
            base, "--slowlog-log-slower-than", "0", "--slowlog-max-len", "100000"
        )
        started["lru"] = start_redis(base, "--maxmemory-policy", "allkeys-lru")
        started["volatile"] = start_redis(base, "--maxmemory-policy", "volatile-lru")
        started["noconfig"] = start_redis(base, "--rename-command", "CONFIG", '""')
        yield started
    finally:
        for server in started.values():
            server.stop()


def widest_command(server: RedisServer) -> int:
    """Arguments of the widest command in the slow log since the last call (then reset it).

    The slow log keeps 31 arguments of a longer command and ends it with ``... (N more
    arguments)``.
    """
    client = redis.Redis.from_url(server.url)
    try:
        widest = 0
        for entry in client.slowlog_get(100_000):
            cmd: bytes = entry["command"]
            more = re.search(rb"\.\.\. \((\d+) more arguments\)$", cmd)
            widest = max(widest, 31 + int(more.group(1)) if more else len(cmd.split(b" ")))
        client.slowlog_reset()
        return widest
    finally:
        client.close()


async def test_reads_fills_and_updates_are_chunked(servers: dict[str, RedisServer]) -> None:
    """No read, fill or write-through update sends one command of more than 5,000 ids."""
    server = servers["log"]
    addr, ids = SessionAddr("ns", "big"), [str(i) for i in range(N)]
    writes = [KeyWrite("pre-key", i, b"v" * 40) for i in ids]
    durable = RedisDurable(
        RedisOptions(with_query(server.url, prefix=unique_prefix()), role="durable", op_timeout=10)
    )
    await durable.open()
    try:
        await durable.write_keys(addr, writes)  # one atomic script, by design
        widest_command(server)
        assert len(await durable.get_keys(addr, "pre-key", ids)) == N
        assert widest_command(server) <= CHUNK + 3
    finally:
        await durable.close()
    cache = RedisCache(
        RedisOptions(with_query(server.url, prefix=unique_prefix()), role="cache", op_timeout=10)
    )
    await cache.open()
    try:
        stamp = (await cache.read_keys(addr, "pre-key", ids[:1])).stamp
        widest_command(server)
        assert await cache.fill_keys(addr, writes, stamp=stamp, token=None)
        await cache.update_keys(addr, [KeyWrite("pre-key", i, None) for i in ids], token=None)
        assert len((await cache.read_keys(addr, "pre-key", ids)).found) == 0
        # groups: a few arguments per script besides the two per id of a key write
        assert widest_command(server) <= 2 * CHUNK + 20
    finally:
        await cache.close()


def eviction_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == "redis_eviction_policy"]


async def test_allkeys_policy_warns_on_both_tiers(
    servers: dict[str, RedisServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = servers["lru"].url
    durable_only = StoreConfig(durable=with_query(url, prefix=unique_prefix()), cache=None)
    hybrid = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'h.db'}", cache=with_query(url, prefix=unique_prefix())
    )
    for config, tier, says in (
        (durable_only, "durable", "evict durable data"),
        (hybrid, "cache", "evict leases and outbox entries"),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="baileys_store"):
            async with AuthStore(config) as store:
                health = await store.check()
        records = eviction_records(caplog)
        assert [r.levelno for r in records] == [logging.WARNING]
        assert "allkeys-lru" in records[0].getMessage()
        assert says in records[0].getMessage()
        assert "127.0.0.1" not in records[0].getMessage()  # no address, no secret
        probe = next(t for t in health.tiers if t.tier == tier)
        assert probe.ok
        assert "warning" in probe.detail
        assert "allkeys-lru" in probe.detail
        assert health.status == "healthy"  # a warning, not an outage


async def test_noeviction_and_volatile_policies_do_not_warn(
    servers: dict[str, RedisServer],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for server, policy in ((redis_server, "noeviction"), (servers["volatile"], "volatile-lru")):
        caplog.clear()
        config = StoreConfig(durable=with_query(server.url, prefix=unique_prefix()), cache=None)
        with caplog.at_level(logging.WARNING, logger="baileys_store"):
            async with AuthStore(config) as store:
                health = await store.check()
        assert eviction_records(caplog) == []
        assert health.tiers[0].detail == f"standalone; maxmemory-policy {policy}"


async def test_config_disabled_says_unknown(
    servers: dict[str, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    config = StoreConfig(
        durable=with_query(servers["noconfig"].url, prefix=unique_prefix()), cache=None
    )
    with caplog.at_level(logging.WARNING, logger="baileys_store"):
        async with AuthStore(config) as store:
            health = await store.check()
    assert eviction_records(caplog) == []
    assert health.status == "healthy"
    assert health.tiers[0].detail == "standalone; maxmemory-policy unknown"
