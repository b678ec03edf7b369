"""A hybrid store opened while Redis is down (issue 12, item 5).

Open with the cache down must behave as a cache outage during a run: serve from the durable
tier, reconnect in the background, use the cache again once Redis answers, and never read
stale. Callers see :class:`UnavailableError` (or :class:`BreakerOpenError`) meanwhile, never
:class:`StoreClosedError`. Write-behind (Redis is the primary) still refuses to open.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import redis

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store.observability._metrics import NullMetrics
from tests._services.redis import RedisServer, with_query
from tests.fault._checker import Checker
from tests.fault.conftest import FaultRedis

SESSIONS = 3
FAST = {
    "op_timeout": 1.0,
    "breaker_min_calls": 5,
    "breaker_window": 2.0,
    "breaker_reset_timeout": 0.5,
    "lease_ttl": 3.0,
}


class CountingMetrics(NullMetrics):
    """Counts the calls to the Redis cache that succeeded, by operation."""

    def __init__(self) -> None:
        self.cache_ok: dict[str, int] = {}

    def observe_op(
        self, op: str, tier: str, result: str, seconds: float, namespace: str = ""
    ) -> None:
        if tier == "cache" and result == "ok":
            self.cache_ok[op] = self.cache_ok.get(op, 0) + 1


def _config(tmp_path: Path, redis_url: str, prefix: str, **extra: object) -> StoreConfig:
    cache = with_query(
        redis_url,
        prefix=prefix,
        ttl="600",
        socket_timeout="0.5",
        socket_connect_timeout="0.5",
        retries="1",
    )
    return StoreConfig(
        durable=f"sqlite:///{tmp_path / 'open-down.db'}", cache=cache, **{**FAST, **extra}
    )


async def _loop(
    store: AuthStore, n: int, check: Checker, until: float, outcomes: list[tuple[float, str]]
) -> None:
    """One client: read then write its own record, recording (time, outcome) per call."""
    counter = 0
    while time.monotonic() < until:
        sid = f"s{n % SESSIONS}"
        keys = store.session(sid, namespace="open").keys
        kid = f"{n}.0"
        start = check.now()
        try:
            got = await keys.get("session", [kid])
            value = got.get(kid)
            check.check_read(
                sid,
                "session",
                [kid],
                {kid: int(value)} if value is not None else {},
                started_at_seq=start,
                reader=n,
            )
            outcomes.append((time.monotonic(), "ok"))
        except errors.StoreError as exc:
            outcomes.append((time.monotonic(), type(exc).__name__))
        counter += 1
        ticket = check.begin_write(sid, {"session": {kid: counter}})
        try:
            await keys.set({"session": {kid: str(counter).encode()}})
        except errors.StoreError as exc:
            check.fail(ticket, exc)
            outcomes.append((time.monotonic(), type(exc).__name__))
        else:
            check.ack(ticket)
            outcomes.append((time.monotonic(), "ok"))
        await asyncio.sleep(0.005)


def _keys_under(server: RedisServer, prefix: str) -> int:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{prefix}:*"))
    finally:
        client.close()


async def _healthy_within(store: AuthStore, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (await store.check()).status == "healthy":
            return True
        await asyncio.sleep(0.1)
    return False


async def test_open_with_redis_down_recovers(fault_redis: FaultRedis, tmp_path: Path) -> None:
    prefix = f"o{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, fault_redis.url, prefix)
    metrics = CountingMetrics()
    fault_redis.proxy.set_refuse()  # Redis "down": connections refused
    store = AuthStore(config, metrics=metrics)
    await store.open()  # write-through: opens degraded
    try:
        assert (await store.check()).status == "degraded"
        check = Checker()
        outcomes: list[tuple[float, str]] = []
        up_at = time.monotonic() + 1.5
        until = up_at + 5.0

        async def bring_up() -> None:
            await asyncio.sleep(max(up_at - time.monotonic(), 0.0))
            fault_redis.proxy.set_pass()

        await asyncio.gather(
            bring_up(), *(_loop(store, n, check, until, outcomes) for n in range(4))
        )
        kinds = {k for _, k in outcomes if k != "ok"}
        assert kinds <= {"UnavailableError", "BreakerOpenError"}, kinds
        # Recovery within a bounded time: every call from 3 s after Redis came back succeeded.
        late = [k for t, k in outcomes if t > up_at + 3.0]
        assert late
        assert all(k == "ok" for k in late), sorted(set(late))
        assert check.counts["stale_reads"] == 0, check.anomalies
        assert check.counts["acked"] > 50
        # The cache is used again: leases taken there, writes brought to it, data held there.
        assert metrics.cache_ok.get("acquire_lease", 0) >= SESSIONS, metrics.cache_ok
        assert metrics.cache_ok.get("update_keys", 0) > 10, metrics.cache_ok
        assert _keys_under(fault_redis.server, prefix + "c") > 0
        assert (await store.check()).status == "healthy"
    finally:
        await store.close()


async def test_writes_while_down_are_not_served_stale(
    fault_redis: FaultRedis, tmp_path: Path
) -> None:
    """A record cached before, re-written while the cache was away, is not read back old."""
    prefix = f"o{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, fault_redis.url, prefix, lease="off")
    async with AuthStore(config) as first:  # warm the cache with v1
        keys = first.session("a", namespace="stale").keys
        await keys.set({"session": {"1": b"v1"}})
        assert (await keys.get("session", ["1"])) == {"1": b"v1"}
    fault_redis.proxy.set_refuse()
    store = AuthStore(config)
    await store.open()
    try:
        keys = store.session("a", namespace="stale").keys
        await keys.set({"session": {"1": b"v2"}})  # durable only: the cache is away
        fault_redis.proxy.set_pass()
        assert await _healthy_within(store, 5.0)
        for _ in range(3):
            assert (await keys.get("session", ["1"])) == {"1": b"v2"}
    finally:
        await store.close()


async def test_write_behind_refuses_to_open(fault_redis: FaultRedis, tmp_path: Path) -> None:
    config = _config(
        tmp_path, fault_redis.url, f"o{uuid.uuid4().hex[:8]}", write_mode="write-behind"
    )
    fault_redis.proxy.set_refuse()
    store = AuthStore(config)
    start = time.monotonic()
    with pytest.raises(errors.UnavailableError):
        await store.open()
    assert time.monotonic() - start < 5.0
    with pytest.raises(errors.StoreClosedError):  # not open: that error is right here
        await store.session("a").keys.get("session", ["1"])


async def test_close_stops_reconnecting(fault_redis: FaultRedis, tmp_path: Path) -> None:
    config = _config(tmp_path, fault_redis.url, f"o{uuid.uuid4().hex[:8]}")
    fault_redis.proxy.set_refuse()
    store = AuthStore(config)
    await store.open()
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await store.close()
    await asyncio.sleep(0.2)
    left = [t for t in before if not t.done() and t is not asyncio.current_task()]
    assert not left, left
