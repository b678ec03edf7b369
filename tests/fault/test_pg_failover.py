"""PostgreSQL failover under load: a primary SIGKILLed, its streaming standby promoted.

The store runs on ``postgresql://primary,standby/db?target_session_attrs=read-write`` (the
durable tier alone, and under a write-through Redis cache) while writer tasks set unique values
and read them back. Each write sets four keys of its writer to one value, so a half-applied write
shows as a read (or a final state) whose four values differ, and one key of its own, so the final
state shows every acknowledged write (a later write to the same key cannot mask a lost one).
Then every process of the primary is SIGKILLed at once (a crash: its connections drop
mid-statement), the standby is promoted with
``pg_ctl promote`` at once (a failover manager's job), and the load goes on.

Invariants, from the :class:`Checker`'s model of what the clients were told:

- synchronous standby (``synchronous_standby_names='*'``): no acknowledged write lost, no stale
  read, no torn write, every failure an ``UnavailableError``, writes succeed again within
  ``RECOVERY`` seconds of the kill;
- asynchronous standby: the acknowledged writes the standby had not received are lost (measured
  and printed, not asserted: usually 0 on loopback, never guaranteed), and reads after the
  failover may return the values before them; still no torn write, no value nobody wrote, only
  ``UnavailableError`` failures, and the store recovers within ``RECOVERY``;
- switchover (the primary turned read-only, SQLSTATE 25006, then the standby promoted): nothing
  lost or stale, the store drops the read-only connections and reconnects to the new primary.

Figures go to stdout as JSON lines and, with ``BAILEYS_FAULT_REPORT=FILE``, are appended to FILE.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors, open_store
from tests._services.pg_pair import PgPair
from tests._services.redis import RedisServer, with_query
from tests.fault._checker import Key
from tests.fault._load import Load, final_state
from tests.fault.test_hybrid_faults import report

OP_TIMEOUT = 1.0
WRITERS, SESSIONS, WIDTH = 6, 3, 4  # WIDTH keys per write, all set to the write's value
BEFORE, AFTER = 1.5, 2.5  # seconds of load before the fault and after the recovery
RECOVERY = 10.0  # the goal: writes succeed again within this many seconds of the kill
# Breakers that let a trial call through 1 s after opening (the default waits 30 s, which
# would then be the recovery time: see the README).
FAST = {"breaker_min_calls": 5, "breaker_window": 2.0, "breaker_reset_timeout": 1.0}


@pytest.fixture
def pair_factory() -> Iterator[list[PgPair]]:
    """Pairs started by the test; every one is stopped at teardown, whatever happened."""
    pairs: list[PgPair] = []
    try:
        yield pairs
    finally:
        for pair in pairs:
            pair.stop()


def start_pair(pairs: list[PgPair], *, sync: bool) -> tuple[PgPair, str]:
    pair = PgPair()
    pairs.append(pair)
    pair.start(sync=sync)
    database = f"bsf_{uuid.uuid4().hex[:8]}"
    pair.create_database(database)
    return pair, database


async def writer(load: Load, store: AuthStore, n: int) -> None:
    """Four keys of its own per write (one value), a log key per write, a shared sender-key now
    and then."""
    sid = f"s{n % SESSIONS}"
    own = [f"{n}.{i}" for i in range(WIDTH)]
    for msg in itertools.count():
        if load.stop.is_set():
            return
        value = next(load.values)
        writes: dict[str, dict[str, Any]] = {
            "session": dict.fromkeys(own, value),
            # A key of this write alone, never overwritten: the final state shows each
            # acknowledged write, not just the last one per key (later writes would mask a loss).
            "sender-key-memory": {f"log{value}": value},
        }
        if msg % 4 == 3:
            writes["sender-key"] = {f"g@g.us::{sid}::0": next(load.values)}
        ok = await load.write(store, sid, writes)
        await load.read(store, sid, "session", own)
        if msg % 4 == 3:
            await load.read(store, sid, "sender-key", [f"g@g.us::{sid}::0"])
        # Back off a little while the tier is down, as a client would.
        await asyncio.sleep(0.002 if ok else 0.05)


async def creds_owner(load: Load, store: AuthStore, sid: str) -> None:
    """The one creds writer of ``sid``: compare-and-set on the version it last saw.

    With one writer per session a ``ConflictError`` is spurious unless saves were lost: a
    retry whose first attempt committed before its connection dropped must be recognised as
    that commit (the backend compares the stored blob), not reported as a conflict.
    """
    session = store.session(sid)
    version: int | None = None
    while not load.stop.is_set():
        if version is None:
            start = load.checker.now()
            try:
                async with asyncio.timeout(4 * OP_TIMEOUT + 2):
                    creds, version = await session.load_versioned_creds()
            except Exception as exc:
                load.outcomes["read_errors"] += 1
                load.classify(exc)
                await asyncio.sleep(0.05)
                continue
            got = {"": creds["fault_n"]} if creds else {}
            load.checker.check_read(sid, "creds", [""], got, started_at_seq=start, reader=sid)
        value = next(load.values)
        ticket = load.checker.begin_write(sid, {"creds": {"": value}})
        try:
            async with asyncio.timeout(4 * OP_TIMEOUT + 2):
                version = await session.save_creds({"fault_n": value}, expected_version=version)
        except Exception as exc:
            load.checker.fail(ticket, exc)
            if isinstance(exc, errors.ConflictError):
                load.outcomes["creds_conflicts"] += 1
            else:
                load.classify(exc)
            version = None  # unknown outcome: read the version again
        else:
            load.checker.ack(ticket)
        await asyncio.sleep(0.02)


def torn_final(final: dict[Key, object | None]) -> int:
    """Writers whose four keys ended with different values (a half-applied write)."""
    groups: dict[tuple[str, str], set[str]] = {}
    for (sid, key_type, key_id), value in final.items():
        if key_type == "session":
            groups.setdefault((sid, key_id.partition(".")[0]), set()).add(repr(value))
    return sum(len(values) > 1 for values in groups.values())


async def run_failover(
    name: str, pair: PgPair, config: StoreConfig, fault: str, *, lag: float = 0.0
) -> dict[str, Any]:
    """Load, ``fault`` ("kill" or "switchover"), load until recovered + ``AFTER``; figures.

    ``lag``: seconds the standby receives nothing before the kill (the walsender stopped).
    """
    load = Load(OP_TIMEOUT)
    timings: dict[str, float] = {}
    async with open_store(config) as store:
        tasks = [asyncio.create_task(writer(load, store, n)) for n in range(WRITERS)]
        tasks += [asyncio.create_task(creds_owner(load, store, f"s{n}")) for n in range(SESSIONS)]
        try:
            await asyncio.sleep(BEFORE)
            acked_before = load.checker.counts["acked"]
            if lag:
                pair.pause_replication()
                await asyncio.sleep(lag)
            t0 = time.monotonic()
            if fault == "kill":
                await asyncio.to_thread(pair.kill_primary)
            else:
                await asyncio.to_thread(pair.demote_primary)
            # Writes begun from now on met the fault: the first acknowledged one ends the outage.
            load.fault_at = time.monotonic()
            if fault != "kill":
                await asyncio.to_thread(pair.wait_standby_caught_up)
                timings["caught_up_s"] = time.monotonic() - t0
            await asyncio.to_thread(pair.promote)
            timings["promoted_s"] = time.monotonic() - t0
            deadline = t0 + RECOVERY + 5
            while load.first_ok_after is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(AFTER)
        finally:
            load.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        health = next(t for t in (await store.check()).tiers if t.tier == "durable")
    # A fresh store: nothing cached in the process, the new primary's rows only.
    async with open_store(config.model_copy(update={"cache": None})) as fresh:
        final = await final_state(fresh, load.checker.keys())
    lost = load.checker.lost_writes(final)
    recovery = None if load.first_ok_after is None else load.first_ok_after - t0
    figures: dict[str, Any] = {
        **load.checker.report(),
        "acked_before_fault": acked_before,
        "lost": len(lost),  # keys whose final value breaks the model
        "lost_writes": sum(k.key[1] == "sender-key-memory" for k in lost),  # acknowledged writes
        "torn": load.outcomes["torn"],
        "torn_final": torn_final(final),
        "read_errors": load.outcomes["read_errors"],
        "creds_conflicts": load.outcomes["creds_conflicts"],
        "bad_outcomes": {k: v for k, v in load.outcomes.items() if ":" in k or k == "hung"},
        "recovery_s": None if recovery is None else round(recovery, 2),
        **{k: round(v, 2) for k, v in timings.items()},
        "health": health.detail,
    }
    report(name, figures)
    for anomaly in load.checker.anomalies[:5]:
        print(json.dumps(anomaly, default=repr))
    assert figures["acked_before_fault"] > 50, figures  # the load really ran before the fault
    assert figures["acked"] > figures["acked_before_fault"] + 50, figures  # and after it
    assert recovery is not None, figures
    assert recovery <= RECOVERY, figures
    assert (figures["torn"], figures["torn_final"]) == (0, 0), figures
    assert not figures["bad_outcomes"], figures  # only UnavailableError, no hang
    assert health.ok, figures
    assert f":{pair.standby_port}" in health.detail, figures  # the promoted standby answers
    return figures


def store_config(pair: PgPair, database: str, cache: str | None = None) -> StoreConfig:
    return StoreConfig(
        durable=pair.multi_host_url(database), cache=cache, op_timeout=OP_TIMEOUT, **FAST
    )


@pytest.mark.timeout(90)
async def test_sync_standby_kill_primary_loses_nothing(pair_factory: list[PgPair]) -> None:
    pair, database = start_pair(pair_factory, sync=True)
    figures = await run_failover(
        "postgres sync standby: primary SIGKILL + promote",
        pair,
        store_config(pair, database),
        "kill",
    )
    assert (figures["lost"], figures["stale_reads"], figures["out_of_order"]) == (0, 0, 0), figures
    assert figures["creds_conflicts"] == 0, figures


@pytest.mark.timeout(90)
async def test_async_standby_kill_primary_recovers(pair_factory: list[PgPair]) -> None:
    """Lost acknowledged writes are measured, not asserted: asynchronous replication."""
    pair, database = start_pair(pair_factory, sync=False)
    await run_failover(
        "postgres async standby: primary SIGKILL + promote",
        pair,
        store_config(pair, database),
        "kill",
    )


@pytest.mark.timeout(90)
async def test_async_standby_lagging_loses_acknowledged_writes(pair_factory: list[PgPair]) -> None:
    """The standby 0.5 s behind at the kill: the writes acknowledged meanwhile are lost, and
    reads after the failover return the values before them. Asserted > 0, so the checker is
    shown to catch a loss (the synchronous case's 0 means something); no torn write."""
    pair, database = start_pair(pair_factory, sync=False)
    figures = await run_failover(
        "postgres async standby 0.5 s behind: primary SIGKILL + promote",
        pair,
        store_config(pair, database),
        "kill",
        lag=0.5,
    )
    assert figures["lost_writes"] > 0, figures


@pytest.mark.timeout(90)
async def test_switchover_read_only_primary_25006(pair_factory: list[PgPair]) -> None:
    """The primary turns read-only under load (writes get 25006), the caught-up standby is
    promoted: the store drops the read-only connections and writes to the new primary."""
    pair, database = start_pair(pair_factory, sync=False)
    figures = await run_failover(
        "postgres switchover: primary read-only (25006) + promote",
        pair,
        store_config(pair, database),
        "switchover",
    )
    assert (figures["lost"], figures["stale_reads"], figures["out_of_order"]) == (0, 0, 0), figures
    assert figures["creds_conflicts"] == 0, figures


@pytest.mark.timeout(90)
async def test_sync_standby_under_redis_cache(
    pair_factory: list[PgPair], redis_server: RedisServer
) -> None:
    """The same kill as the durable tier of a write-through hybrid."""
    pair, database = start_pair(pair_factory, sync=True)
    cache = with_query(redis_server.url, prefix=f"pf{uuid.uuid4().hex[:8]}", ttl="600")
    figures = await run_failover(
        "postgres sync standby under a Redis cache: primary SIGKILL + promote",
        pair,
        store_config(pair, database, cache),
        "kill",
    )
    assert (figures["lost"], figures["stale_reads"], figures["out_of_order"]) == (0, 0, 0), figures
    assert figures["creds_conflicts"] == 0, figures
