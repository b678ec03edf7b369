"""Auto-pipelining (backends/redis/_pipeline.py) on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from baileys_store.backends.redis._pipeline import Coalescer
from tests._services.redis import RedisServer, free_port


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    pool = aredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=8)
    c = aredis.Redis.from_pool(pool)
    yield c
    await c.aclose()


# Sets KEYS[1] to "slow", then holds the server for 0.3 s (DEBUG SLEEP is off by default).
_SLOW_SET = (
    "redis.call('SET', KEYS[1], 'slow'); local t = redis.call('TIME'); while true do "
    "local n = redis.call('TIME'); if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 300000 "
    "then break end end; return 1"
)


def _key() -> str:
    return f"bs-pipe-{uuid.uuid4().hex}"


async def test_a_lone_caller_sends_at_once(client: aredis.Redis) -> None:
    co, key = Coalescer(client), _key()
    assert await co.execute([("SET", key, b"v"), ("GET", key)]) == [b"OK", b"v"]
    assert co.batches == 0
    await client.delete(key)


async def test_concurrent_callers_share_one_pipeline_and_get_their_own_replies(
    client: aredis.Redis,
) -> None:
    co = Coalescer(client)
    keys = [_key() for _ in range(200)]

    async def one(i: int) -> list[object]:
        # A group is one block: its GET sees its own SET whatever else is in the batch.
        return await co.execute([("SET", keys[i], str(i)), ("INCR", keys[i]), ("GET", keys[i])])

    replies = await asyncio.gather(*(one(i) for i in range(200)))
    assert replies == [[b"OK", i + 1, str(i + 1).encode()] for i in range(200)]
    assert 1 <= co.batches < 20  # batched: far fewer pipelines than callers
    await client.delete(*keys)


async def test_an_error_reply_comes_back_in_place(client: aredis.Redis) -> None:
    co, key = Coalescer(client), _key()

    async def bad() -> list[object]:
        return await co.execute([("EVALSHA", "0" * 40, 0), ("SET", key, b"after")])

    async def good() -> list[object]:
        return await co.execute([("PING",)])

    first, second = await asyncio.gather(bad(), good())
    assert isinstance(first[0], NoScriptError)
    assert isinstance(first[0], ResponseError)
    assert first[1] == b"OK"  # the rest of the group still ran
    assert second == [b"PONG"]  # raw replies: no redis-py response callbacks
    assert await client.get(key) == b"after"
    await client.delete(key)


async def test_a_cancelled_caller_leaves_the_batch_to_the_others(client: aredis.Redis) -> None:
    co = Coalescer(client)
    keys = [_key() for _ in range(10)]
    tasks = [asyncio.ensure_future(co.execute([("SET", k, b"x"), ("GET", k)])) for k in keys]
    await asyncio.sleep(0)  # every task has joined (the first is the leader, yielding)
    tasks[0].cancel()  # the leader, during its yield
    tasks[5].cancel()  # a follower
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert isinstance(done[5], asyncio.CancelledError)
    assert all(d == [b"OK", b"x"] for i, d in enumerate(done) if i not in (0, 5))
    await co.close()
    await client.delete(*keys)


async def test_a_leader_cancelled_mid_batch_does_not_cancel_the_others(
    client: aredis.Redis,
) -> None:
    co, key = Coalescer(client), _key()
    # The batch's first command holds the server for 0.3 s: cancel the leader meanwhile.
    tasks = [
        asyncio.ensure_future(co.execute([("EVAL", _SLOW_SET, 1, key)])),
        asyncio.ensure_future(co.execute([("GET", key)])),
    ]
    await asyncio.sleep(0.1)
    tasks[0].cancel()
    leader, follower = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(leader, asyncio.CancelledError)
    assert follower == [b"slow"]  # ran after the leader's script, on the same connection
    await co.close()
    await client.delete(key)


async def test_a_connection_error_reaches_every_caller() -> None:
    dead = aredis.Redis.from_pool(
        aredis.BlockingConnectionPool(host="127.0.0.1", port=free_port(), max_connections=2)
    )
    co = Coalescer(dead)
    try:
        results = await asyncio.gather(
            *(co.execute([("PING",)]) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results)
        assert len({id(r) for r in results}) == 5  # each caller its own exception object
    finally:
        await dead.aclose()


async def test_a_lone_caller_cancelled_mid_read_drops_its_connection(
    client: aredis.Redis,
) -> None:
    co, key = Coalescer(client), _key()
    task = asyncio.ensure_future(co.execute([("EVAL", _SLOW_SET, 1, key), ("SET", key, b"1")]))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The pool is still sound: the next command reads its own reply, not the late ones.
    assert await co.execute([("GET", "bs-pipe-absent-" + key)]) == [None]
    await asyncio.sleep(0.3)
    assert await co.execute([("GET", key)]) == [b"1"]
    await client.delete(key)
