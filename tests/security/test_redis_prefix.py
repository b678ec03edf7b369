"""A hybrid store's cache and a Redis-only durable store must never share a key prefix.

The cache treats what it finds under its prefix as cached data: a lease takeover evicts a
session's creds and keys there. Over a durable store's prefix that deleted the durable store's
data. Both orders of opening are refused with ConfigError and nothing under the prefix changes,
also for data written before the prefix carried a role marker.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from baileys_store import AuthStore, StoreConfig, errors
from tests._services.redis import RedisServer, with_query
from tests.creds_data import key_pair, node_creds


def snapshot(server: RedisServer, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its type and value (TTLs aside)."""
    client: Any = redis.Redis.from_url(server.url)
    out: dict[bytes, Any] = {}
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            kind: bytes = client.type(key)
            value: Any = {
                b"hash": client.hgetall,
                b"string": client.get,
                b"set": client.smembers,
                b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                b"list": lambda k: client.lrange(k, 0, -1),
            }[kind](key)
            out[key] = (kind, value)
    finally:
        client.close()
    return out


def delete(server: RedisServer, key: str) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        assert client.delete(key) == 1
    finally:
        client.close()


@pytest.fixture
def prefix() -> str:
    """The effective prefix both stores use: the cache adds ``c`` to the one in its URL."""
    return f"p{uuid.uuid4().hex[:10]}c"


def durable_config(server: RedisServer, prefix: str) -> StoreConfig:
    return StoreConfig(durable=with_query(server.url, prefix=prefix), cache=None)


def hybrid_config(server: RedisServer, prefix: str, tmp_path: Path, **kw: Any) -> StoreConfig:
    cache = with_query(server.url, prefix=prefix[:-1], ttl="600")  # "<p>" + "c" == prefix
    return StoreConfig(durable=f"sqlite:///{tmp_path / 'h.db'}", cache=cache, **kw)


async def fill(config: StoreConfig) -> None:
    async with AuthStore(config) as store:
        sess = store.session("s1", namespace="ns")
        await sess.save_creds(node_creds())
        await sess.keys.set({"pre-key": {"1": key_pair(), "2": key_pair()}})


async def assert_filled(config: StoreConfig) -> None:
    async with AuthStore(config) as store:
        sess = store.session("s1", namespace="ns")
        assert await sess.load_creds() is not None
        assert set(await sess.keys.get("pre-key", ["1", "2"])) == {"1", "2"}


async def refused(config: StoreConfig) -> str:
    store = AuthStore(config)
    with pytest.raises(errors.ConfigError) as info:
        await store.open()
    await store.close()
    return str(info.value)


async def test_cache_refuses_a_durable_prefix(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    durable = durable_config(redis_server, prefix)
    await fill(durable)
    before = snapshot(redis_server, prefix)
    assert before
    message = await refused(hybrid_config(redis_server, prefix, tmp_path))
    assert "Redis-only durable store" in message
    assert prefix in message
    # Write-behind too (the cache is the primary there): refused before anything is written.
    await refused(hybrid_config(redis_server, prefix, tmp_path, write_mode="write-behind"))
    assert snapshot(redis_server, prefix) == before
    await assert_filled(durable)


async def test_durable_refuses_a_cache_prefix(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    hybrid = hybrid_config(redis_server, prefix, tmp_path, write_mode="write-behind")
    await fill(hybrid)
    before = snapshot(redis_server, prefix)
    message = await refused(durable_config(redis_server, prefix))
    assert "hybrid store's cache" in message
    assert snapshot(redis_server, prefix) == before
    await assert_filled(hybrid)


async def test_cache_refuses_durable_data_older_than_the_marker(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A durable store last opened before the role marker existed has ``:schema``, no role."""
    durable = durable_config(redis_server, prefix)
    await fill(durable)
    delete(redis_server, f"{prefix}:role")
    before = snapshot(redis_server, prefix)
    await refused(hybrid_config(redis_server, prefix, tmp_path))
    assert snapshot(redis_server, prefix) == before  # no role claimed either
    await assert_filled(durable)  # and the durable store still opens and reads all


async def test_durable_refuses_cache_data_older_than_the_marker(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """A cache bound before the role marker existed has ``:durable`` (its binding), no role."""
    hybrid = hybrid_config(redis_server, prefix, tmp_path)
    await fill(hybrid)
    delete(redis_server, f"{prefix}:role")
    before = snapshot(redis_server, prefix)
    await refused(durable_config(redis_server, prefix))
    assert snapshot(redis_server, prefix) == before
    await assert_filled(hybrid)


async def test_each_store_keeps_working_on_its_own_prefix(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """The check is no obstacle to the supported layout: durable ``bs``, cache ``bs`` + ``c``."""
    durable = durable_config(redis_server, prefix[:-1])  # "<p>", the cache's is "<p>c"
    hybrid = hybrid_config(redis_server, prefix, tmp_path)
    await fill(durable)
    await fill(hybrid)
    await assert_filled(durable)
    await assert_filled(hybrid)
