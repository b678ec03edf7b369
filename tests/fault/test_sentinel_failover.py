"""Redis Sentinel failover under load: the master SIGKILLed, the sentinels promote the replica.

The hybrid store (SQLite durable tier) runs its cache on ``redis+sentinel://`` while one writer
task per session sets unique values and reads them back (four keys per write, one value, so a
torn write shows). Then the master's process group is SIGKILLed; the sentinels
(``down-after-milliseconds 1000``, quorum 2) promote the replica and the store follows.

Invariants, from the :class:`Checker`'s model of what the clients were told:

- write-through: no acknowledged write lost, no stale or out-of-order read, no torn write, every
  failure an ``UnavailableError``; writes succeed again, and the cache answers on the promoted
  replica, within ``RECOVERY`` seconds of the kill;
- write-behind with ``cache_replica_acks=1`` (the old master restarted as the new one's
  replica): nothing is acknowledged while the replica is cut off, nothing acknowledged is
  lost, nothing is marked lost;
- write-behind without replica acks: the replica is cut off (frozen, link dropped) for a moment
  before the kill, so the acknowledged entries of that moment exist only on the master and are
  lost with it (the RPO, measured). They must be *detected*: the sessions are marked lost
  (``DataLossError`` until acknowledged, ``data_loss`` counted), never served stale; no stale
  read, no torn write, and writes succeed again within ``RECOVERY``.

Figures go to stdout as JSON lines and, with ``BAILEYS_FAULT_REPORT=FILE``, are appended to FILE.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors, open_store
from tests._services.redis import _cli, unique_prefix
from tests._services.sentinel import SentinelSet, sentinels
from tests.fault._checker import Key
from tests.fault._load import Load, final_state
from tests.fault.test_hybrid_faults import report

OP_TIMEOUT = 2.0
WRITERS, WIDTH = 4, 4  # one session per writer; WIDTH keys per write, all set to one value
BEFORE, AFTER = 1.5, 2.0  # seconds of load before the fault and after the recovery
CUT_OFF = 0.4  # write-behind: seconds of load the replica does not receive before the kill
RECOVERY = 10.0  # the goal: writes succeed again within this many seconds of the kill
FAST = {"breaker_min_calls": 5, "breaker_window": 2.0, "breaker_reset_timeout": 1.0}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinels(tmp_path / "sentinel") as d:
        yield d


async def writer(load: Load, store: AuthStore, n: int) -> None:
    """Its own session; after a data loss it acknowledges it and moves to new keys."""
    sid = f"s{n}"
    for generation in itertools.count():
        own = [f"{n}.{generation}.{i}" for i in range(WIDTH)]
        while not load.stop.is_set():
            ok = await load.write(store, sid, {"session": dict.fromkeys(own, next(load.values))})
            await load.read(store, sid, "session", own)
            if store.acknowledge_data_loss(sid):
                load.outcomes["acknowledged"] += 1
                break  # the lost keys are not read again: their last values are gone
            await asyncio.sleep(0.002 if ok else 0.05)
        if load.stop.is_set():
            return


def torn_final(final: dict[Key, object | None]) -> int:
    groups: dict[tuple[str, str], set[str]] = {}
    for (sid, _, key_id), value in final.items():
        groups.setdefault((sid, key_id.rpartition(".")[0]), set()).add(repr(value))
    return sum(len(values) > 1 for values in groups.values())


def cut_off(d: SentinelSet) -> int:
    """Freeze the replica and drop its link: it receives nothing more; its pid."""
    replica = d.replica()
    assert replica.proc is not None
    assert d.master is not None
    os.killpg(replica.proc.pid, signal.SIGSTOP)
    _cli(d.master.port, "CLIENT", "KILL", "TYPE", "replica")
    return replica.proc.pid


async def drained(store: AuthStore, within: float = 20.0) -> None:
    """Drain the outbox, retried while the cache's breaker is still open after the fault."""
    deadline = time.monotonic() + within
    while True:
        try:
            await store.drain_outbox()
        except errors.UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            return


async def cache_answers_on(store: AuthStore, port: int, deadline: float) -> float | None:
    """Seconds until ``check()`` shows the cache answering on ``port`` (None: not in time)."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        health = next(t for t in (await store.check()).tiers if t.tier == "cache")
        if health.ok and f"master 127.0.0.1:{port}" in health.detail:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def run_failover(
    name: str, d: SentinelSet, config: StoreConfig, *, cut: bool, rejoin: bool = False
) -> dict[str, Any]:
    """Load, (``cut``: replica cut off for CUT_OFF s), kill the master, (``rejoin``: restart
    it as the new master's replica, which replica acks need), load until recovered + AFTER."""
    load = Load(OP_TIMEOUT)
    d.wait_synced()
    async with open_store(config) as store:
        tasks = [asyncio.create_task(writer(load, store, n)) for n in range(WRITERS)]
        frozen: int | None = None
        try:
            await asyncio.sleep(BEFORE)
            acked_cut = load.checker.counts["acked"]
            if cut:
                frozen = await asyncio.to_thread(cut_off, d)
                await asyncio.sleep(CUT_OFF)
            acked_before = load.checker.counts["acked"]
            t0 = time.monotonic()
            old = await asyncio.to_thread(d.kill_master)
            load.fault_at = time.monotonic()
            if frozen is not None:
                os.killpg(frozen, signal.SIGCONT)
                frozen = None
            new = await asyncio.to_thread(d.wait_failover, old)
            promoted = time.monotonic() - t0
            if rejoin:
                await asyncio.to_thread(d.restart, old)
            deadline = t0 + RECOVERY + 5
            while load.first_ok_after is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            cache_back = await cache_answers_on(store, new.port, deadline)
            await asyncio.sleep(AFTER)
        finally:
            if frozen is not None:
                os.killpg(frozen, signal.SIGCONT)
            load.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        report_doc = await store.check()
        marked = report_doc.data_loss_sessions
        for n in range(WRITERS):
            store.acknowledge_data_loss(f"s{n}")
        await drained(store)
        health = next(t for t in report_doc.tiers if t.tier == "cache")
    async with open_store(config.model_copy(update={"cache": None})) as fresh:
        final = await final_state(fresh, load.checker.keys())
    lost = load.checker.lost_writes(final)
    recovery = None if load.first_ok_after is None else load.first_ok_after - t0
    figures: dict[str, Any] = {
        **load.checker.report(),
        "acked_before_fault": acked_before,
        "acked_while_cut_off": acked_before - acked_cut,
        "lost": len(lost),
        "lost_writes": len({(k.key[0], repr(k.expected)) for k in lost}),
        "torn": load.outcomes["torn"],
        "torn_final": torn_final(final),
        "read_errors": load.outcomes["read_errors"],
        "data_loss_errors": load.outcomes["data_loss_errors"],
        "acknowledged": load.outcomes["acknowledged"],
        "marked_lost_at_end": marked,
        "bad_outcomes": {k: v for k, v in load.outcomes.items() if ":" in k or k == "hung"},
        "promoted_s": round(promoted, 2),
        "recovery_s": None if recovery is None else round(recovery, 2),
        "cache_back_s": None
        if cache_back is None
        else round(cache_back + recovery, 2)
        if recovery is not None
        else None,
        "health": health.detail,
    }
    report(name, figures)
    for anomaly in load.checker.anomalies[:5]:
        print(json.dumps(anomaly, default=repr))
    assert figures["acked_before_fault"] > 50, figures
    assert figures["acked"] > figures["acked_before_fault"] + 50, figures
    assert recovery is not None, figures
    assert recovery <= RECOVERY, figures
    assert cache_back is not None, figures
    assert (figures["torn"], figures["torn_final"]) == (0, 0), figures
    assert (figures["stale_reads"], figures["out_of_order"]) == (0, 0), figures
    assert not figures["bad_outcomes"], figures
    return figures


def config_for(d: SentinelSet, tmp_path: Path, **extra: Any) -> StoreConfig:
    return StoreConfig(
        durable=f"sqlite:///{tmp_path / 'store.db'}",
        cache=d.url(f"prefix={unique_prefix()}&ttl=600"),
        op_timeout=OP_TIMEOUT,
        **FAST,
        **extra,
    )


@pytest.mark.timeout(90)
async def test_write_through_master_killed_loses_nothing(
    deployment: SentinelSet, tmp_path: Path
) -> None:
    figures = await run_failover(
        "sentinel write-through: master SIGKILL",
        deployment,
        config_for(deployment, tmp_path),
        cut=False,
    )
    assert figures["lost"] == 0, figures


@pytest.mark.timeout(90)
async def test_write_behind_without_replica_acks_detects_what_it_lost(
    deployment: SentinelSet, tmp_path: Path
) -> None:
    """The RPO is measured; every lost entry must belong to a session marked lost."""
    figures = await run_failover(
        "sentinel write-behind, no replica acks: replica cut off, master SIGKILL",
        deployment,
        config_for(deployment, tmp_path, write_mode="write-behind"),
        cut=True,
    )
    assert figures["lost"] > 0, figures  # the cut-off moment's entries were on the master only
    # Detected: the writers met DataLossError (and acknowledged it), never a stale value.
    assert figures["acknowledged"] >= 1, figures
    assert figures["data_loss_errors"] >= figures["acknowledged"], figures


@pytest.mark.timeout(90)
async def test_write_behind_without_replica_acks_natural_rpo(
    deployment: SentinelSet, tmp_path: Path
) -> None:
    """No cut-off: what an ordinary SIGKILL loses on loopback (measured, not asserted: it
    depends on the replication lag at the instant of the kill). Whatever it loses is detected."""
    figures = await run_failover(
        "sentinel write-behind, no replica acks: master SIGKILL",
        deployment,
        config_for(deployment, tmp_path, write_mode="write-behind"),
        cut=False,
    )
    if figures["lost"]:
        assert figures["acknowledged"] >= 1, figures


@pytest.mark.timeout(90)
async def test_write_behind_with_replica_acks_loses_nothing(
    deployment: SentinelSet, tmp_path: Path
) -> None:
    """``cache_replica_acks=1``: while the replica is cut off nothing is acknowledged (WAIT
    times out), so the promoted replica has every acknowledged entry and nothing is marked."""
    figures = await run_failover(
        "sentinel write-behind, cache_replica_acks=1: replica cut off, master SIGKILL",
        deployment,
        config_for(deployment, tmp_path, write_mode="write-behind", cache_replica_acks=1),
        cut=True,
        rejoin=True,  # WAIT 1 needs a replica of the new master
    )
    assert figures["lost"] == 0, figures
    # At most the writes whose WAIT the replica answered just before it froze.
    assert figures["acked_while_cut_off"] <= WRITERS, figures
    assert (figures["acknowledged"], figures["data_loss_errors"]) == (0, 0), figures
