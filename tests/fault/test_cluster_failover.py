"""Redis Cluster with replicas: a master SIGKILLed under load, its replica promoted.

The hybrid store (write-through over SQLite, the cache a 3-master + 3-replica Cluster with
``cluster-node-timeout 1000``) runs writer/reader clients over many sessions, so every master
serves some of them, each value unique (the :class:`Checker` model). One master is SIGKILLed;
its replica takes over; redis-py refreshes the topology and the store carries on. Asserted:
no acknowledged write lost (through the store and in SQLite alone), no stale read. Measured:
seconds from the kill until a write to the killed master's slots succeeds again (through the
store's own cluster client), and until the store's writes to those sessions stop failing.
Figures are printed and appended to ``BAILEYS_FAULT_REPORT`` (JSON lines) like the other
fault modules.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store.backends.redis import RedisCache
from tests._services.redis import with_query
from tests._services.replicas import ReplicatedCluster, start_replicated_cluster
from tests.fault._checker import Checker
from tests.fault.test_hybrid_faults import lost_in, lost_in_durable, opened, report, seconds

CLIENTS, SESSIONS = 12, 36
NS = "hac"


@pytest.fixture
def hacluster() -> Iterator[ReplicatedCluster]:
    """A fresh 3-master + 3-replica Cluster (the test kills one master)."""
    cluster = start_replicated_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def slot_of(sid: str) -> int:
    """The Cluster slot of a session's keys (their hash tag is ``{namespace|session_id}``)."""
    return key_slot(f"{NS}|{sid}".encode())


class Load:
    """The clients' loop, and when writes to the killed master's sessions failed and succeeded."""

    def __init__(self, check: Checker, victims: set[str]) -> None:
        self.check, self.victims = check, victims
        self.killed_at: float | None = None
        self.last_victim_failure: float | None = None
        self.first_victim_ack_after_kill: float | None = None
        self.victim_writes = 0
        self.other_failures = 0

    async def client(self, store: AuthStore, n: int, until: float) -> None:
        """Client ``n``: its own key in each of its sessions, read then written in turn."""
        check, counter = self.check, 0
        mine = [f"s{i}" for i in range(n, SESSIONS, CLIENTS)]
        kid = f"{n}.0"
        while time.monotonic() < until:
            sid = mine[counter % len(mine)]
            keys = store.session(sid, namespace=NS).keys
            start = check.now()
            try:
                got = await keys.get("session", [kid])
                value = got.get(kid)
                found: dict[str, object] = {kid: int(value)} if value is not None else {}
                check.check_read(sid, "session", [kid], found, started_at_seq=start, reader=n)
            except errors.StoreError:
                check.counts["read_errors"] += 1
            counter += 1
            value_no = n * 1_000_000 + counter
            ticket = check.begin_write(sid, {"session": {kid: value_no}})
            try:
                await keys.set({"session": {kid: str(value_no).encode()}})
            except errors.StoreError as exc:
                check.fail(ticket, exc)
                if self.killed_at is not None:
                    if sid in self.victims:
                        self.last_victim_failure = time.monotonic()
                    else:  # a session of a healthy master, failed all the same
                        self.other_failures += 1
            else:
                check.ack(ticket)
                if sid in self.victims:
                    self.victim_writes += 1
                    if self.killed_at is not None and self.first_victim_ack_after_kill is None:
                        self.first_victim_ack_after_kill = time.monotonic()
            await asyncio.sleep(0.005)


async def slot_writable(cache: RedisCache, key: str, killed_at: float, limit: float) -> float:
    """Seconds from the kill until a ``SET`` of ``key`` (the killed master's slot) succeeds.

    Each try goes through the store's own runner (its retries, its cluster client's topology
    refresh); a failed try is repeated every 50 ms.
    """
    runner = cache.runner
    client = runner.client
    while time.monotonic() - killed_at < limit:
        try:
            await runner.run("probe", lambda: client.set(key, "1"))
        except errors.UnavailableError:
            await asyncio.sleep(0.05)
            continue
        return time.monotonic() - killed_at
    raise AssertionError(f"the killed master's slot was not writable within {limit}s")


FAST: dict[str, Any] = {
    "op_timeout": 1.0,
    "breaker_min_calls": 5,
    "breaker_window": 2.0,
    "breaker_reset_timeout": 0.5,
    "lease_ttl": 3.0,
}


async def scenario(
    hacluster: ReplicatedCluster,
    tmp_path: Path,
    name: str,
    *,
    restart_after: float | None = None,
    **cfg: Any,
) -> tuple[Checker, Load, dict[str, Any]]:
    """Load, SIGKILL the master of ``s0``'s slot (restarted after ``restart_after`` s if set).

    Returns the model, the load's timings and the figures (also reported under ``name``).
    Checks on the way: every master serves sessions; the killed master's replica took over.
    """
    prefix = f"f{uuid.uuid4().hex[:8]}"
    cache = with_query(hacluster.url, prefix=prefix, ttl="600")
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'store.db'}", cache=cache, **{**FAST, **cfg}
    )
    victim = hacluster.slot_owner(slot_of("s0"))
    promoted_from = hacluster.replica_of(victim)
    owners = {f"s{i}": hacluster.slot_owner(slot_of(f"s{i}")).port for i in range(SESSIONS)}
    assert len(set(owners.values())) == 3, "every master must serve some sessions"
    victims = {sid for sid, port in owners.items() if port == victim.port}
    check = Checker()
    load = Load(check, victims)
    probe_key = f"{prefix}c:{{{NS}|s0}}:probe"
    figures: dict[str, Any] = {}

    async with opened(config) as store:
        assert isinstance(store.cache, RedisCache)
        cache_tier = store.cache

        async def fault() -> None:
            await asyncio.sleep(1.5)
            figures["acked_before_kill"] = check.counts["acked"]
            await asyncio.to_thread(victim.stop)  # SIGKILL
            load.killed_at = time.monotonic()

            async def restart() -> None:
                if restart_after is not None:
                    await asyncio.sleep(restart_after)
                    await asyncio.to_thread(victim.start)  # rejoins as the new master's replica

            probe = slot_writable(cache_tier, probe_key, load.killed_at, 30.0)
            writable, _ = await asyncio.gather(probe, restart())
            figures["slot_writable_s"] = round(writable, 2)

        until = time.monotonic() + seconds(9.0)
        await asyncio.gather(fault(), *(load.client(store, n, until) for n in range(CLIENTS)))
        assert load.killed_at is not None
        if config.write_mode == "write-behind":
            await store.drain_outbox()
        figures["lost"] = await lost_in(store, NS, check)
        promoted = hacluster.slot_owner(slot_of("s0"))
    figures["lost_in_durable"] = await lost_in_durable(config, NS, check)
    failing = load.last_victim_failure
    figures["victim_writes_failing_s"] = round(failing - load.killed_at, 2) if failing else 0.0
    report(
        name,
        {
            **check.report(),
            **figures,
            "read_errors": check.counts["read_errors"],
            "victim_sessions": len(victims),
            "victim_writes_acked": load.victim_writes,
            "other_sessions_writes_failed": load.other_failures,
            "anomalies": check.anomalies[:3],
        },
    )
    assert promoted.port == promoted_from.port, "the killed master's replica took its slots"
    return check, load, figures


@pytest.mark.timeout(90)
async def test_master_killed_under_load_write_through(
    hacluster: ReplicatedCluster, tmp_path: Path
) -> None:
    check, load, figures = await scenario(
        hacluster,
        tmp_path,
        "write-through, Redis Cluster master SIGKILL (3+3, node timeout 1000 ms)",
    )
    assert check.counts["acked"] > 200
    assert load.first_victim_ack_after_kill is not None, "the killed master's sessions recovered"
    lost = (figures["lost"], figures["lost_in_durable"], check.counts["stale_reads"])
    assert lost == (0, 0, 0)


@pytest.mark.timeout(90)
async def test_master_killed_write_behind_with_replica_acks(
    hacluster: ReplicatedCluster, tmp_path: Path
) -> None:
    """Write-behind, ``cache_replica_acks=1``: every acknowledged append was on the replica
    that takes over, so none is lost. The promoted master has no replica of its own until the
    killed node comes back (restarted 3 s after the kill, it rejoins as a replica): until
    then the shard's writes are refused (not acknowledged), never lost."""
    check, load, figures = await scenario(
        hacluster,
        tmp_path,
        "write-behind + cache_replica_acks=1, Redis Cluster master SIGKILL, restarted after 3 s",
        restart_after=3.0,
        write_mode="write-behind",
        cache_replica_acks=1,
    )
    assert check.counts["acked"] > 200
    assert load.first_victim_ack_after_kill is not None, "the killed master's sessions recovered"
    lost = (figures["lost"], figures["lost_in_durable"], check.counts["stale_reads"])
    assert lost == (0, 0, 0)
