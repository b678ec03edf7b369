"""Redis losing its data under write-behind (issue 12, item 8), on a real redis-server.

A ``FLUSHALL`` (or an empty restart) after acknowledged, undrained writes must be noticed: the
affected session raises :class:`DataLossError` (never older or missing values) until
acknowledged, ``data_loss`` is counted, ``check()`` says degraded, L1 is emptied, sessions with
nothing pending carry on from the durable tier, and new writes still reach the durable tier.
``drain_outbox()`` is a barrier even while the in-process worker drains the same sessions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.codec import key_aad
from baileys_store.observability._metrics import NullMetrics
from tests._services.redis import RedisServer, start_redis, unique_prefix, with_query
from tests.integration._backend_cases import opened


class LossMetrics(NullMetrics):
    """Counts ``data_loss()``."""

    def __init__(self) -> None:
        self.losses = 0

    def data_loss(self) -> None:
        self.losses += 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: the tests FLUSHALL it."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def _config(server: RedisServer, tmp_path: Path, **extra: Any) -> StoreConfig:
    cache = with_query(server.url, prefix=unique_prefix(), ttl="600")
    return StoreConfig(
        durable=f"sqlite:///{tmp_path / 'wb.db'}",
        cache=cache,
        write_mode="write-behind",
        op_timeout=5.0,
        **{"outbox_worker": False, **extra},
    )


async def durable_value(store: AuthStore, sid: str, key_id: str) -> object:
    addr = SessionAddr("default", sid)
    blob = (await store.durable.get_keys(addr, "session", [key_id])).get(key_id)
    return None if blob is None else store.codec.decode(blob, key_aad(*addr, "session", key_id))


async def test_flushall_after_acknowledged_writes(own_redis: RedisServer, tmp_path: Path) -> None:
    metrics = LossMetrics()
    async with opened(AuthStore(_config(own_redis, tmp_path), metrics=metrics)) as store:
        a, b = store.session("a"), store.session("b")
        await a.keys.set({"session": {"1": b"v1"}})
        await b.keys.set({"session": {"1": b"b1"}})
        assert await store.drain_outbox() >= 2
        await a.keys.set({"session": {"1": b"v2"}})  # acknowledged, still in the outbox
        assert await a.keys.get("session", ["1"]) == {"1": b"v2"}  # L1 holds it now
        own_redis.flushall()

        # A read L1 answers entirely serves the acknowledged value (not older, not missing);
        # one that reaches Redis finds the session's bookkeeping gone.
        with pytest.raises(errors.DataLossError):  # not v1 (older), not {} (missing)
            await a.keys.get("session", ["1", "2"])
        with pytest.raises(errors.DataLossError):
            await a.keys.get("session", ["1"])  # L1 no longer answers either
        with pytest.raises(errors.DataLossError):
            await a.load_creds()
        assert metrics.losses == 1
        l1 = store._engine.l1
        assert l1 is not None
        assert (await l1.check()).detail == "0 entries"  # L1 dropped: nothing Redis lost
        health = await store.check()
        assert health.status == "degraded"
        assert (health.data_loss_sessions, health.cache_resets) == (1, 1)
        with pytest.raises(errors.DataLossError):  # every operation but delete, until acked
            await a.keys.set({"session": {"1": b"v3"}})

        # A session with nothing pending carries on from the durable tier, and its new
        # writes reach it (sequences start above what the durable tier applied).
        assert await b.keys.get("session", ["1"]) == {"1": b"b1"}
        await b.keys.set({"session": {"1": b"b2"}})
        await store.drain_outbox()
        assert await durable_value(store, "b", "1") == b"b2"

        assert store.acknowledge_data_loss("a")
        assert not store.acknowledge_data_loss("a")
        assert await a.keys.get("session", ["1"]) == {"1": b"v1"}  # the last drained state
        await a.keys.set({"session": {"1": b"v3"}})
        await store.drain_outbox()
        assert await durable_value(store, "a", "1") == b"v3"
        assert (await store.check()).status == "healthy"
        assert metrics.losses == 1


async def test_sequences_survive_a_reset(own_redis: RedisServer, tmp_path: Path) -> None:
    """A drained session's next write after a FLUSHALL reaches the durable tier.

    The durable tier skips a batch at or below its last applied sequence: restarting the
    sequence at 1 would drop the write silently (the cache would show it until its TTL).
    """
    async with opened(AuthStore(_config(own_redis, tmp_path), metrics=LossMetrics())) as store:
        keys = store.session("a").keys
        for n in range(3):
            await keys.set({"session": {"1": f"v{n}".encode()}})
        await store.drain_outbox()
        own_redis.flushall()
        await keys.set({"session": {"1": b"after"}})
        await store.drain_outbox()
        assert await durable_value(store, "a", "1") == b"after"


async def test_loss_noticed_by_the_next_write(own_redis: RedisServer, tmp_path: Path) -> None:
    async with opened(AuthStore(_config(own_redis, tmp_path), metrics=LossMetrics())) as store:
        keys = store.session("a").keys
        await keys.set({"session": {"1": b"v1"}})
        own_redis.flushall()
        with pytest.raises(errors.DataLossError):
            await keys.set({"session": {"2": b"x"}})
        assert (await store.check()).data_loss_sessions == 1
        assert await store.session("a").delete()  # a delete clears the mark
        assert (await store.check()).status == "healthy"
        await keys.set({"session": {"1": b"new"}})
        assert await keys.get("session", ["1"]) == {"1": b"new"}


async def test_loss_noticed_by_a_creds_read(own_redis: RedisServer, tmp_path: Path) -> None:
    async with opened(AuthStore(_config(own_redis, tmp_path), metrics=LossMetrics())) as store:
        session = store.session("a")
        await session.keys.set({"session": {"1": b"v1"}})  # pending
        own_redis.flushall()
        with pytest.raises(errors.DataLossError):  # not None: that would be a re-pair
            await session.load_creds()


async def test_loss_noticed_by_check_when_idle(own_redis: RedisServer, tmp_path: Path) -> None:
    metrics = LossMetrics()
    async with opened(AuthStore(_config(own_redis, tmp_path), metrics=metrics)) as store:
        await store.session("a").keys.set({"session": {"1": b"v1"}})
        own_redis.flushall()
        health = await store.check()
        assert health.status == "degraded"
        assert health.data_loss_sessions == 1
        assert metrics.losses == 1
        with pytest.raises(errors.DataLossError):
            await store.session("a").keys.get("session", ["1"])


class SlowApply(SQLiteDurable):
    """SQLite whose batch applies take a while, so the worker is mid-batch when drains race."""

    async def apply_batch(self, *args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(random.uniform(0.0, 0.02))
        return await super().apply_batch(*args, **kwargs)


async def test_drain_outbox_is_a_barrier_with_the_worker_racing(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Every write acknowledged before ``drain_outbox()`` is durable when it returns.

    Each write adds a new key, so an entry lost between two drains of one batch (the loop and
    the call acking the same entries twice) shows as a missing key, not hidden by a later value.
    """
    config = _config(own_redis, tmp_path, outbox_worker=True, outbox_batch=16)
    store = AuthStore(config, durable=SlowApply(tmp_path / "wb.db"), cache=make_cache(config))
    acked: dict[str, list[str]] = {f"s{i}": [] for i in range(3)}
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        sid, count = f"s{n % 3}", 0
        keys = store.session(sid).keys
        while not stop.is_set():
            count += 1
            kid = f"{n}.{count}"
            await keys.set({"session": {kid: b"x"}})
            acked[sid].append(kid)
            await asyncio.sleep(0.01)  # slower than the drain: the backlog stays bounded

    async def missing(snapshot: dict[str, list[str]]) -> dict[str, int]:
        out = {}
        for sid, ids in snapshot.items():
            found = await store.durable.get_keys(SessionAddr("default", sid), "session", ids)
            out[sid] = len(ids) - len(found)
        return out

    async with opened(store):
        tasks = [asyncio.create_task(writer(n)) for n in range(6)]
        try:
            for _ in range(10):
                await asyncio.sleep(random.uniform(0.02, 0.1))
                before = {sid: list(ids) for sid, ids in acked.items()}
                await store.drain_outbox()
                assert await missing(before) == {"s0": 0, "s1": 0, "s2": 0}
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        await store.drain_outbox()
        assert await missing(acked) == {"s0": 0, "s1": 0, "s2": 0}
        assert sum(len(ids) for ids in acked.values()) > 100
