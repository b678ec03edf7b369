"""Faults with the NATS JetStream outbox: the broker SIGKILLed mid-load, Redis losing its data,
a worker killed mid-drain. The checker's model (``_checker``): 0 acknowledged writes lost (in
the store and in the durable tier alone), 0 stale reads, so nothing applied out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from tests._services.nats import NatsServer, nats_server, unique_outbox  # noqa: F401
from tests._services.redis import RedisServer, start_redis
from tests.fault._checker import Checker
from tests.fault.test_hybrid_faults import (
    FAST,
    SESSIONS,
    cache_url,
    lost_in,
    lost_in_durable,
    opened,
    own_redis,  # noqa: F401 - fixture
    report,
    run_load,
    summary,
)


def _config(redis: RedisServer, nats: NatsServer, db: Path, **kw: object) -> StoreConfig:
    nats.start()
    return StoreConfig(
        durable=f"sqlite:///{db}",
        cache=cache_url(redis),
        write_mode="write-behind",
        outbox=unique_outbox(nats.url, ack_wait="0.5"),
        **{**FAST, **kw},
    )


@pytest.mark.timeout(60)
async def test_broker_killed_and_restarted_mid_load(
    own_redis: RedisServer,  # noqa: F811
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(own_redis, nats_server, tmp_path / "b.db")

    async def fault() -> None:
        await asyncio.sleep(1.0)
        nats_server.stop()  # SIGKILL; same port and store dir on restart
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats_server.start)

    try:
        async with opened(config) as store:
            check = await run_load(store, "nf", 4.0, fault)
            for _ in range(40):  # the client reconnects in the background
                with contextlib.suppress(errors.UnavailableError):
                    await store.drain_outbox()
                    break
                await asyncio.sleep(0.1)
            lost = await lost_in(store, "nf", check)
        lost_durable = await lost_in_durable(config, "nf", check)
    finally:
        nats_server.start()
    report("write-behind over NATS, broker SIGKILL + restart", {**summary(check), "lost": lost})
    assert check.counts["acked"] > 100
    assert check.counts["failed"] > 0
    assert (lost, lost_durable, check.counts["stale_reads"]) == (0, 0, 0)


@pytest.mark.timeout(60)
async def test_redis_data_loss_loses_no_acknowledged_write(
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Redis SIGKILLed without persistence while entries are pending: the broker has them."""
    redis = start_redis(tmp_path / "r")
    try:
        config = _config(redis, nats_server, tmp_path / "r.db", outbox_worker=False)
        check = Checker()
        async with opened(config) as store:
            until, n = time.monotonic() + 1.5, 0
            while time.monotonic() < until:
                n += 1
                sid, kid = f"s{n % SESSIONS}", f"{n % 40}.0"
                ticket = check.begin_write(sid, {"session": {kid: n}})
                await store.session(sid, namespace="rl").keys.set(
                    {"session": {kid: str(n).encode()}}
                )
                check.ack(ticket)
        redis.stop()  # every pending entry of the Redis outbox is gone with it
        await asyncio.to_thread(redis.start)
        async with opened(config.model_copy(update={"outbox_worker": True})) as store:
            broker = store._engine.broker
            assert broker is not None
            recovered = broker.recovered
            lost = await lost_in(store, "rl", check)
        lost_durable = await lost_in_durable(config, "rl", check)
    finally:
        redis.stop()
    report("NATS outbox, Redis data loss", {"acked": n, "recovered": recovered, "lost": lost})
    assert n > 100
    assert recovered == n
    assert (lost, lost_durable) == (0, 0)


@pytest.mark.timeout(60)
async def test_worker_killed_mid_drain(
    own_redis: RedisServer,  # noqa: F811
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(
        own_redis,
        nats_server,
        tmp_path / "w.db",
        outbox_worker=False,
        outbox_batch=8,
        outbox_claim_timeout=1.0,
    )
    check = Checker()
    async with opened(config) as writer:
        for n in range(1, 601):
            sid, kid = f"s{n % SESSIONS}", f"{n % 25}.0"
            ticket = check.begin_write(sid, {"session": {kid: n}})
            await writer.session(sid, namespace="wk").keys.set({"session": {kid: str(n).encode()}})
            check.ack(ticket)
        worker_store = AuthStore(config)
        await worker_store.open()
        worker = worker_store._engine.worker
        assert worker is not None
        task = asyncio.get_running_loop().create_task(worker.run())
        while not worker._claimed:  # noqa: ASYNC110 - mid-drain: a claim taken, a batch in flight
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        # Killed: no release of its claims, a batch possibly half-acked. The flag too: nats-py
        # swallows a cancellation landing in some of its calls (the loop then ends after it).
        task.cancel()
        worker._stopping = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        worker_store._engine.worker = None  # its claims lapse on their own (claim timeout)
        await worker_store.close()
        await asyncio.sleep(1.1)
        assert await writer.drain_outbox() > 0
        lost = await lost_in(writer, "wk", check)
        assert await writer._engine.transport.sessions() == {}  # type: ignore[union-attr]
    lost_durable = await lost_in_durable(config, "wk", check)
    assert (lost, lost_durable) == (0, 0)


@pytest.mark.timeout(90)
async def test_redis_killed_mid_load_loses_nothing_acknowledged(
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Redis SIGKILLed (no persistence) and restarted empty under load, worker running.

    With the Redis outbox this loses every entry not yet drained (the RPO test in
    ``test_hybrid_faults``); with the NATS outbox the broker has them: 0 lost, 0 stale.
    """
    redis = start_redis(tmp_path / "k")
    try:
        config = _config(redis, nats_server, tmp_path / "k.db")

        async def fault() -> None:
            await asyncio.sleep(1.0)
            redis.stop()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis.start)

        async with opened(config) as store:
            check = await run_load(store, "rk", 4.0, fault)
            watch = store._engine.watch
            assert watch is not None
            for _ in range(100):  # the worker's next round recovers and lifts the marks
                if not watch.lost:
                    break
                await asyncio.sleep(0.1)
            for _ in range(40):
                with contextlib.suppress(errors.UnavailableError):
                    await store.drain_outbox()
                    break
                await asyncio.sleep(0.1)
            lost = await lost_in(store, "rk", check)
            resets = watch.resets
        lost_durable = await lost_in_durable(config, "rk", check)
    finally:
        redis.stop()
    report(
        "write-behind over NATS, Redis SIGKILL + restart (empty)",
        {**summary(check), "lost": lost, "lost_in_durable": lost_durable, "resets": resets},
    )
    assert check.counts["acked"] > 100
    assert resets >= 1
    assert (lost, lost_durable) == (0, 0), check.anomalies
    # A read that began as Redis came back empty must not fill the new cache with the durable
    # value from before the broker's replay (the read path skips fills while a reset is
    # being handled).
    assert check.counts["stale_reads"] == 0, check.anomalies
