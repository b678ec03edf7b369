"""``baileys-store cache reset``: the way out of a cache bound to a database that is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from redis.asyncio import Redis, RedisCluster

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store.cli._cache import cache_group
from tests._services.redis import (
    RedisClusterServers,
    RedisServer,
    unique_prefix,
    with_query,
)


def _reset(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cache_group, ["reset", *args], input=stdin, env=env)


async def _write(db: Path, cache: str, *, write_mode: str = "write-through", n: int = 3) -> None:
    config = StoreConfig(
        durable=f"sqlite:///{db}", cache=cache, write_mode=write_mode, outbox_worker=False
    )
    async with AuthStore(config) as store:
        for i in range(n):
            session = store.session(f"s{i}", namespace="reset")
            await session.keys.set({"session": {"1.0": b"x" * 10}, "pre-key": {"1": b"k"}})
            await session.keys.get("session", ["1.0"])  # cached


async def _keys_under(url: str, prefix: str) -> int:
    base = url.split("?", maxsplit=1)[0]
    client = RedisCluster.from_url(base) if "cluster=true" in url else Redis.from_url(base)
    try:  # a Cluster client scans every master
        return len([k async for k in client.scan_iter(match=f"{prefix}:*")])
    finally:
        await client.aclose()


def _delete_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_deleted_sqlite_file_error_names_reset_and_reset_lets_it_open(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    cache = with_query(redis_server.url, prefix=prefix, ttl="600")
    db = tmp_path / "app.db"
    asyncio.run(_write(db, cache))
    _delete_db(db)
    config = StoreConfig(durable=f"sqlite:///{db}", cache=cache)
    with pytest.raises(errors.ConfigError, match=r"belongs to another durable tier.*cache reset"):
        asyncio.run(AuthStore(config).open())

    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) > 0
    result = _reset("--cache", cache, "--yes")
    assert result.exit_code == 0, result.output
    assert "Dropped " in result.output
    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) == 0

    async def reopen() -> dict[str, int]:
        async with AuthStore(config) as store:
            session = store.session("s0", namespace="reset")
            await session.keys.set({"session": {"2.0": b"new"}})
            return await session.key_counts()

    assert asyncio.run(reopen()) == {"session": 1}  # the new database, bound afresh
    assert _reset("--cache", cache, "--yes").exit_code == 0  # idempotent


def test_reset_refused_while_write_behind_entries_are_pending(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    cache = with_query(redis_server.url, prefix=prefix, ttl="600")
    db = tmp_path / "wb.db"
    asyncio.run(_write(db, cache, write_mode="write-behind", n=2))
    before = asyncio.run(_keys_under(redis_server.url, prefix + "c"))

    result = _reset("--cache", cache, "--yes")
    assert result.exit_code == 1
    assert "2 session(s) with write-behind entries not drained" in result.output
    assert "outbox drain" in result.output
    assert "--discard-pending" in result.output
    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) == before  # nothing dropped

    # The way the message names: drain into the bound database, then reset is allowed.
    async def drain() -> int:
        config = StoreConfig(durable=f"sqlite:///{db}", cache=cache, outbox_worker=False)
        async with AuthStore(config) as store:
            return await store.drain_outbox()

    assert asyncio.run(drain()) == 2
    result = _reset("--cache", cache, "--yes")
    assert result.exit_code == 0, result.output


def test_discard_pending_drops_undrained_entries_after_a_prompt(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    cache = with_query(redis_server.url, prefix=prefix, ttl="600")
    asyncio.run(_write(tmp_path / "wb.db", cache, write_mode="write-behind", n=1))
    result = _reset("--cache", cache, "--discard-pending", stdin="y\n")
    assert result.exit_code == 0, result.output
    assert "1 session(s) with undrained entries and 0 with dead letters will be LOST" in (
        result.output
    )
    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) == 0


@pytest.mark.parametrize(("stdin", "why"), [(None, "no confirmation (pass --yes)"), ("n\n", "")])
def test_reset_without_yes_needs_a_confirmation(
    redis_server: RedisServer, tmp_path: Path, stdin: str | None, why: str
) -> None:
    prefix = unique_prefix()
    cache = with_query(redis_server.url, prefix=prefix, ttl="600")
    asyncio.run(_write(tmp_path / "a.db", cache))
    before = asyncio.run(_keys_under(redis_server.url, prefix + "c"))
    result = _reset("--cache", cache, stdin=stdin)
    assert result.exit_code == 1
    assert f"cache not reset{': ' + why if why else ''}" in result.output
    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) == before


def test_reset_refuses_a_redis_only_durable_prefix(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    durable = with_query(redis_server.url, prefix=prefix + "c")  # what the cache URL names

    async def write() -> None:
        async with AuthStore(StoreConfig(durable=durable, cache=None)) as store:
            await store.session("s").keys.set({"session": {"1.0": b"x"}})

    asyncio.run(write())
    before = asyncio.run(_keys_under(redis_server.url, prefix + "c"))
    result = _reset("--cache", with_query(redis_server.url, prefix=prefix), "--yes")
    assert result.exit_code == 1
    assert "holds a Redis-only durable store, not a cache" in result.output
    assert asyncio.run(_keys_under(redis_server.url, prefix + "c")) == before


def test_reset_needs_a_redis_cache_url() -> None:
    result = _reset("--yes", env={"BAILEYS_STORE_CACHE": "none"})
    assert result.exit_code == 1
    assert "needs a redis:// or redis+sentinel:// cache URL" in result.output
    result = _reset("--cache", "redis://127.0.0.1:6379/0?bogus=1", "--yes")
    assert result.exit_code == 1
    assert "Error:" in result.output


def test_reset_on_a_cluster_drops_the_prefix_on_every_master(
    redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    cache = with_query(redis_cluster.url, prefix=prefix, ttl="600")
    db = tmp_path / "c.db"
    asyncio.run(_write(db, cache, n=12))  # 12 hash tags: spread over the 3 masters
    _delete_db(db)
    assert asyncio.run(_keys_under(redis_cluster.url, prefix + "c")) > 12
    result = _reset("--cache", cache, "--yes")
    assert result.exit_code == 0, result.output
    assert asyncio.run(_keys_under(redis_cluster.url, prefix + "c")) == 0

    async def reopen() -> None:
        async with AuthStore(StoreConfig(durable=f"sqlite:///{db}", cache=cache)):
            pass

    asyncio.run(reopen())
