"""Every metric the store defines is updated by the store itself (on a real Redis + SQLite).

One scenario drives a hybrid store through what each metric counts — hits and misses, fills,
conflicts, a takeover that fences the old holder, an open breaker, a durable outage buffered in
the outbox, a dead letter, a corrupt blob, a corrupt cached record, a retried Redis call, Redis
losing write-behind data — and fails if any method of the
metrics interface was never called or any family has no sample. No metric may be defined and
left dead (the Node anchor defined 33 and updated 20).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
import redis.exceptions as rex
from prometheus_client import CollectorRegistry

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.observability import METRICS_DOC, StoreMetrics
from baileys_store.observability._metrics import Metrics
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.integration._flaky import FlakySQLite

NS = "metrics"


class Spy(StoreMetrics):
    """StoreMetrics that also records which methods were called."""

    called: set[str]

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("_") and name in METHODS:
            object.__getattribute__(self, "called").add(name)
        return attr


METHODS = {n for n in dir(Metrics) if not n.startswith("_")}


async def test_every_metric_is_updated(redis_server: RedisServer, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    spy = Spy(registry)
    spy.called = set()
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'm.db'}",
        cache=cache,
        op_timeout=2.0,
        lease_ttl=1,
        breaker_min_calls=2,
        breaker_reset_timeout=0.2,
        outbox_worker=False,
        outbox_max_attempts=1,
    )
    durable = FlakySQLite(tmp_path / "m.db")
    # Backends built by hand count their retries where the caller says (the store's own do so
    # through the registry): here, into the store's metrics.
    redis_tier = make_cache(config, lambda: spy.retry("cache"))
    a = AuthStore(config, durable=durable, cache=redis_tier, metrics=spy)
    await a.open()
    keys = a.session("s1", namespace=NS).keys
    await keys.set({"session": {"1.0": b"v1"}, "pre-key": {"1": b"p"}})
    assert await keys.get("session", ["1.0", "2.0"]) == {"1.0": b"v1"}  # L1 / cache / miss
    assert (await keys.get("session", ["1.0"])) == {"1.0": b"v1"}
    await a.session("s1", namespace=NS).save_creds({"registrationId": 1})
    with pytest.raises(errors.ConflictError):
        await a.session("s1", namespace=NS).save_creds({"registrationId": 2}, expected_version=9)
    assert a._engine.leases is not None
    await a._engine.leases.renew_all()

    # A corrupt blob in the durable tier, read around the caches.
    addr = SessionAddr(NS, "s2")
    await durable.write_keys(addr, [KeyWrite("session", "x", b"\xb5garbage")])
    with pytest.raises(errors.CorruptDataError):
        await a.session("s2", namespace=NS).keys.get("session", ["x"])
    # A corrupt record in the Redis cache: evicted, the durable copy served.
    s1 = SessionAddr(NS, "s1")
    redis_cache: Any = a.cache
    await redis_cache.runner.client.hset(
        redis_cache.runner.base(s1) + "k:session", "1.0", b"\xb5garbage"
    )
    assert a._engine.l1 is not None
    a._engine.l1.forget(s1)
    assert await keys.get("session", ["1.0"]) == {"1.0": b"v1"}

    # A Redis connection reset under a call: the call is retried. (Injected: killing the pool's
    # connections with CLIENT KILL is noticed by redis-py when it checks a connection out, and
    # reconnected there, so it no longer reaches the retry layer.)
    admin = aredis.Redis.from_url(redis_server.url)
    client: Any = redis_cache.runner.client
    real, resets = client.execute_command, [rex.ConnectionError("reset by the test")]

    async def reset_once(*args: Any, **kwargs: Any) -> Any:
        if resets:
            raise resets.pop()
        return await real(*args, **kwargs)

    client.execute_command = reset_once
    try:
        await a.session("s3", namespace=NS).keys.get("session", ["a"])
    finally:
        del client.execute_command
    assert resets == []

    # The durable tier goes down: writes are buffered, reads of misses fail, the breaker opens.
    durable.fail_with = errors.UnavailableError("down")
    await keys.set({"session": {"1.0": b"v2"}})
    for _ in range(40):  # until failures outnumber the earlier successes in the window
        with pytest.raises(errors.UnavailableError):
            await keys.get("session", ["9.9"])
        if a.breakers["durable"].state == "open":
            break
    assert a.breakers["durable"].state == "open"
    with pytest.raises(errors.UnavailableError):
        await a.drain_outbox()
    durable.fail_with = errors.CorruptDataError("rejected")  # a poison entry
    await asyncio.sleep(0.25)
    await a.drain_outbox()
    durable.fail_with = errors.UnavailableError("down again")
    await keys.set({"session": {"1.0": b"v3"}})  # buffered again
    durable.fail_with = None
    await asyncio.sleep(0.25)  # the breaker lets a trial through
    assert await a.drain_outbox() == 1
    await a.check()

    # Another process takes the session over: the old holder is fenced.
    await a._engine.leases.stop_renewing()
    b = AuthStore(
        config, durable=SQLiteDurable(tmp_path / "m.db"), cache=make_cache(config), metrics=spy
    )
    await b.open()
    with pytest.raises(errors.LeaseHeldError):
        await b.session("s1", namespace=NS).keys.set({"session": {"1.0": b"b"}})
    await asyncio.sleep(1.1)
    await b.session("s1", namespace=NS).keys.set({"session": {"1.0": b"b"}})
    with pytest.raises(errors.FencedError):
        await keys.set({"session": {"1.0": b"stale"}})
    await b.close()
    await a.close()

    # Write-behind on a prefix whose keys Redis lost (a flush, an empty restart): detected.
    wb_prefix = unique_prefix()
    wb_config = config.model_copy(
        update={
            "cache": with_query(redis_server.url, prefix=wb_prefix),
            "write_mode": "write-behind",
        }
    )
    c = AuthStore(
        wb_config,
        durable=SQLiteDurable(tmp_path / "m.db"),
        cache=make_cache(wb_config),
        metrics=spy,
    )
    await c.open()
    await c.session("s9", namespace=NS).keys.set({"session": {"1": b"acked"}})
    lost = [k async for k in admin.scan_iter(match=f"{wb_prefix}*")]
    assert lost
    await admin.delete(*lost)
    with pytest.raises(errors.DataLossError):
        await c.session("s9", namespace=NS).keys.set({"session": {"2": b"x"}})
    await c.close()
    await admin.aclose()

    assert METHODS - spy.called == set()
    families = {m.name for m in registry.collect() if m.samples}
    expected = {name.removesuffix("_total") for name, *_ in METRICS_DOC}
    assert expected - families == set()
    for name in (
        "baileys_store_durable_fallbacks_total",
        "baileys_store_outbox_applied_total",
        "baileys_store_outbox_dead_letters_total",
        "baileys_store_retries_total",
        "baileys_store_fenced_writes_total",
        "baileys_store_codec_errors_total",
    ):
        assert (
            registry.get_sample_value(name)
            or sum(s.value for m in registry.collect() for s in m.samples if s.name == name)
        ) > 0, name

    # Every tier call is counted and timed with its tier, operation and outcome.
    def ops(tier: str) -> dict[tuple[str, str], float]:
        return {
            (s.labels["op"], s.labels["result"]): s.value
            for m in registry.collect()
            for s in m.samples
            if s.name == "baileys_store_operations_total" and s.labels["tier"] == tier
        }

    durable_ops, cache_ops = ops("durable"), ops("cache")
    for op in ("write_keys", "get_keys", "save_creds", "apply_batch", "advance_fence"):
        assert durable_ops.get((op, "ok"), 0) > 0, op
    assert durable_ops.get(("get_keys", "unavailable"), 0) > 0  # the outage, refusals included
    assert durable_ops.get(("write_keys", "fenced"), 0) > 0  # the old holder's late write
    for op in ("update_keys", "read_keys", "acquire_lease", "renew_lease", "wb_keys", "claim"):
        assert cache_ops.get((op, "ok"), 0) > 0, op
    assert "other" not in {op for op, _ in (*durable_ops, *cache_ops)}  # every call is named
    durations = {
        (s.labels["tier"], s.labels["op"])
        for m in registry.collect()
        for s in m.samples
        if s.name == "baileys_store_operation_duration_seconds_count"
    }
    assert {
        ("durable", "write_keys"),
        ("cache", "update_keys"),
        ("store", "write_keys"),
    } <= durations
