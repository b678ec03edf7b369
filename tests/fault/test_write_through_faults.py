"""Write-through hybrid (Redis over PostgreSQL) under real faults, through the public API only.

Concurrent clients run the Baileys write pattern (per message a ``session`` read and write; every
fourth message one multi-type ``set`` that consumes a ``pre-key`` and upserts a shared
``sender-key``; creds saved and loaded now and then) while a fault is injected through the fault
proxies or by killing the server. Every value is a fresh integer, so the :class:`Checker` can
tell an old value from a new one. Invariants: no acknowledged write lost (through the store, and
in PostgreSQL alone), no stale or out-of-order read, no untyped exception, and every operation
ends within ``op_timeout`` + a margin. Failed writes (``UnavailableError`` and friends) are
allowed: their outcome is unknown and the checker treats them so.

``pytest -m soak`` runs a longer variant (``BAILEYS_FAULT_SECONDS``, default 60 s, more clients)
that cycles every fault.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from baileys_store import AuthStore, StoreConfig, errors, open_store
from tests._services.redis import with_query
from tests.fault._checker import Checker, Key
from tests.fault.conftest import FaultPostgres, FaultRedis

T = TypeVar("T")
OP_TIMEOUT = 1.0
MARGIN = 0.5  # scheduling on a shared 2-core machine, plus the store's own bookkeeping
BOUND = 4 * OP_TIMEOUT + MARGIN  # lock wait + cache, durable, cache: anything longer hangs
HANG = 10.0  # an operation still running after this is a hang (cancelled, counted)
SESSIONS, PRE_KEYS = 3, 400
# Breakers that react within a scenario (the defaults wait 30 s before a trial call).
FAST = {"breaker_min_calls": 5, "breaker_window": 2.0, "breaker_reset_timeout": 1.0}


def fault_seconds(default: float) -> float:
    """``BAILEYS_FAULT_SECONDS`` when set, else ``default``."""
    return float(os.environ.get("BAILEYS_FAULT_SECONDS", default))


@dataclass
class Run:
    """One scenario's model, counters and the slowest operation of each kind."""

    checker: Checker = field(default_factory=Checker)
    values: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    slowest: dict[str, float] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # read errors, untyped, hung, slow
    events: list[tuple[int, str]] = field(default_factory=list)  # (checker time, fault step)

    def event(self, what: str) -> None:
        """Note a fault step on the checker's clock (printed with the anomalies)."""
        self.events.append((self.checker.now(), what))

    async def timed(self, kind: str, op: Awaitable[T]) -> T:
        """Await ``op``, recording its duration; a hang is cancelled and raised as TimeoutError."""
        start = time.monotonic()
        try:
            async with asyncio.timeout(HANG):
                return await op
        except TimeoutError:
            self.outcomes["hung"] += 1
            raise
        except errors.StoreError:
            raise
        except Exception as exc:  # a bug: every failure must be a typed StoreError
            self.outcomes[f"untyped:{type(exc).__name__}"] += 1
            raise
        finally:
            took = time.monotonic() - start
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), round(took, 3))
            # op_timeout bounds each tier call and the wait for the session's earlier writes;
            # a write makes at most three calls after that wait (README, Configuration).
            if took > BOUND:
                self.outcomes[f"slow:{kind}"] += 1

    async def write(
        self, store: AuthStore, ns: str, sid: str, writes: dict[str, dict[str, object | None]]
    ) -> None:
        ticket = self.checker.begin_write(sid, writes)
        try:
            await self.timed("set", store.session(sid, namespace=ns).keys.set(writes))
        except Exception as exc:
            self.checker.fail(ticket, exc)
        else:
            self.checker.ack(ticket)

    async def read(
        self, store: AuthStore, ns: str, sid: str, key_type: str, ids: list[str], reader: str
    ) -> None:
        start = self.checker.now()
        try:
            got = await self.timed("get", store.session(sid, namespace=ns).keys.get(key_type, ids))
        except Exception:
            self.outcomes["read_errors"] += 1
            return
        self.checker.check_read(sid, key_type, ids, got, started_at_seq=start, reader=reader)

    async def save_creds(self, store: AuthStore, ns: str, sid: str) -> None:
        value = next(self.values)
        ticket = self.checker.begin_write(sid, {"creds": {"": value}})
        try:
            session = store.session(sid, namespace=ns)
            await self.timed("save_creds", session.save_creds({"fault_n": value}))
        except Exception as exc:
            self.checker.fail(ticket, exc)
        else:
            self.checker.ack(ticket)

    async def load_creds(self, store: AuthStore, ns: str, sid: str, reader: str) -> None:
        start = self.checker.now()
        try:
            creds = await self.timed("load_creds", store.session(sid, namespace=ns).load_creds())
        except Exception:
            self.outcomes["read_errors"] += 1
            return
        got = {"": creds["fault_n"]} if creds else {}
        self.checker.check_read(sid, "creds", [""], got, started_at_seq=start, reader=reader)


async def client(run: Run, store: AuthStore, ns: str, n: int, until: float) -> None:
    """One client: its own chats' ``session`` records, its own pre-keys, shared sender-keys."""
    sid, me = f"s{n % SESSIONS}", f"c{n}"
    pre_keys = iter(range(n * PRE_KEYS // 16, (n + 1) * PRE_KEYS // 16))
    for msg in itertools.count():
        if time.monotonic() >= until:
            return
        jid = f"{n}{msg % 4}.0"  # 4 chats per client
        await run.read(store, ns, sid, "session", [jid], me)
        writes: dict[str, dict[str, object | None]] = {"session": {jid: next(run.values)}}
        if msg % 4 == 3:  # a group message: consume a pre-key, upsert the group's sender-key
            if (pk := next(pre_keys, None)) is not None:
                writes["pre-key"] = {str(pk): None}
            writes["sender-key"] = {f"g{msg % 2}@g.us::{sid}::0": next(run.values)}
        await run.write(store, ns, sid, writes)
        if msg % 4 == 3:
            groups = [f"g{g}@g.us::{sid}::0" for g in (0, 1)]
            await run.read(store, ns, sid, "sender-key", groups, me)
        if msg % 10 == 5:
            if n < SESSIONS:  # one creds owner per session
                await run.save_creds(store, ns, sid)
            await run.load_creds(store, ns, sid, me)
        await asyncio.sleep(0.005)


async def final_state(store: AuthStore, ns: str, keys: list[Key]) -> dict[Key, object | None]:
    """What ``store`` holds now for every key written."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for sid, key_type, key_id in keys:
        wanted.setdefault((sid, key_type), []).append(key_id)
    out: dict[Key, object | None] = {}
    for (sid, key_type), ids in wanted.items():
        session = store.session(sid, namespace=ns)
        if key_type == "creds":
            creds = await session.load_creds()
            out[(sid, "creds", "")] = creds["fault_n"] if creds else None
            continue
        got = await session.keys.get(key_type, ids)
        out.update({(sid, key_type, i): got.get(i) for i in ids})
    return out


Fault = Callable[[Run], Awaitable[None]]


async def scenario(
    name: str,
    config: StoreConfig,
    fault: Fault,
    *,
    seconds: float,
    clients: int = 8,
    after: Fault | None = None,
) -> dict[str, Any]:
    """Load + fault (+ ``after`` the load, at once), then the final state through the store and
    in the durable tier alone."""
    run, ns = Run(), f"f{uuid.uuid4().hex[:8]}"
    async with open_store(config) as store:
        for s in range(SESSIONS):  # the pre-keys of pairing, acknowledged before the load
            pre_keys: dict[str, object | None] = {str(i): next(run.values) for i in range(PRE_KEYS)}
            await run.write(store, ns, f"s{s}", {"pre-key": pre_keys})
        until = time.monotonic() + seconds
        loads = [client(run, store, ns, n, until) for n in range(clients)]
        await asyncio.gather(fault(run), *loads)
        if after is not None:
            await after(run)
        await store.drain_outbox()  # writes buffered while the durable tier was down
        lost = run.checker.lost_writes(await final_state(store, ns, run.checker.keys()))
    async with open_store(config.model_copy(update={"cache": None})) as durable:
        lost_durable = run.checker.lost_writes(await final_state(durable, ns, run.checker.keys()))
    figures: dict[str, Any] = {
        **run.checker.report(),
        "lost": len(lost),
        "lost_in_durable": len(lost_durable),
        **run.outcomes,
        "slowest_s": run.slowest,
    }
    print(json.dumps({"scenario": name, **figures}, sort_keys=True))
    for anomaly in run.checker.anomalies:  # the first few stale / out-of-order reads
        print(json.dumps(anomaly, default=repr))
    if run.checker.anomalies:
        print(json.dumps({"fault_steps": run.events}))
    assert figures["acked"] > 100, figures  # the load really ran
    assert (figures["lost"], figures["lost_in_durable"]) == (0, 0), (lost[:5], lost_durable[:5])
    assert (figures["stale_reads"], figures["out_of_order"]) == (0, 0), figures
    assert not [k for k in run.outcomes if k.startswith(("untyped", "hung", "slow"))], figures
    return figures


def make_config(fault_redis: FaultRedis, fault_postgres: FaultPostgres) -> StoreConfig:
    cache = with_query(fault_redis.url, prefix=f"f{uuid.uuid4().hex[:8]}", ttl="600")
    return StoreConfig(durable=fault_postgres.dsn, cache=cache, op_timeout=OP_TIMEOUT, **FAST)


async def redis_blackhole(run: Run, fr: FaultRedis, at: float = 1.5, hold: float = 2.0) -> None:
    """Redis unreachable for ``hold`` s; then the partition heals (held bytes land late)."""
    await asyncio.sleep(at)
    run.event("redis blackhole")
    fr.proxy.set_blackhole()
    await asyncio.sleep(hold)
    fr.proxy.set_pass()
    run.event("redis pass")


async def redis_killed(run: Run, fr: FaultRedis, at: float = 1.5, down: float = 1.0) -> None:
    """SIGKILL redis-server (no persistence: it comes back empty) and restart it."""
    await asyncio.sleep(at)
    run.event("redis kill")
    await asyncio.to_thread(fr.server.stop)
    await asyncio.sleep(down)
    await asyncio.to_thread(fr.server.start)
    run.event("redis started")


async def postgres_cut(run: Run, fp: FaultPostgres, at: float = 1.0) -> None:
    """Server-side terminations, then RSTs from the network, then terminations again."""
    await asyncio.sleep(at)
    run.event("pg terminate")
    await asyncio.to_thread(fp.terminate_backends)
    await asyncio.sleep(1.0)
    run.event("pg reset")
    fp.proxy.set_reset()
    await asyncio.sleep(0.5)
    fp.proxy.set_pass()
    run.event("pg pass")
    await asyncio.sleep(1.0)
    run.event("pg terminate")
    await asyncio.to_thread(fp.terminate_backends)


async def postgres_blackhole(
    run: Run, fp: FaultPostgres, at: float = 1.5, hold: float = 2.0
) -> None:
    """PostgreSQL unreachable for ``hold`` s; then the partition heals (held bytes land late)."""
    await asyncio.sleep(at)
    run.event("pg blackhole")
    fp.proxy.set_blackhole()
    await asyncio.sleep(hold)
    fp.proxy.set_pass()
    run.event("pg pass")


async def test_redis_blackholed(fault_redis: FaultRedis, fault_postgres: FaultPostgres) -> None:
    await scenario(
        "write-through, Redis blackholed 2 s",
        make_config(fault_redis, fault_postgres),
        lambda run: redis_blackhole(run, fault_redis),
        seconds=6.0,
    )


async def test_redis_killed_and_restarted(
    fault_redis: FaultRedis, fault_postgres: FaultPostgres
) -> None:
    await scenario(
        "write-through, Redis SIGKILL + restart",
        make_config(fault_redis, fault_postgres),
        lambda run: redis_killed(run, fault_redis),
        seconds=6.0,
    )


async def test_postgres_connections_cut(
    fault_redis: FaultRedis, fault_postgres: FaultPostgres
) -> None:
    await scenario(
        "write-through, PostgreSQL backends terminated + connections reset",
        make_config(fault_redis, fault_postgres),
        lambda run: postgres_cut(run, fault_postgres),
        seconds=6.0,
    )


async def test_postgres_blackholed(fault_redis: FaultRedis, fault_postgres: FaultPostgres) -> None:
    await scenario(
        "write-through, PostgreSQL blackholed 2 s",
        make_config(fault_redis, fault_postgres),
        lambda run: postgres_blackhole(run, fault_postgres),
        seconds=7.0,
    )


async def test_postgres_blackholed_then_redis_killed(
    fault_redis: FaultRedis, fault_postgres: FaultPostgres
) -> None:
    """Writes buffered in the outbox during the PostgreSQL outage, then Redis dies (during the
    load, and right after it): reads that fall back to PostgreSQL must not go back in time, and
    no acknowledged write may be lost (write-through: PostgreSQL has every acknowledged write
    once it is back)."""

    async def faults(run: Run) -> None:
        await postgres_blackhole(run, fault_postgres, at=1.0)
        await redis_killed(run, fault_redis, at=2.0)

    # Killed again right after the last acknowledgement, so no later write can mask a loss.
    await scenario(
        "write-through, PostgreSQL blackholed 2 s, then Redis SIGKILL + restart",
        make_config(fault_redis, fault_postgres),
        faults,
        seconds=9.0,
        clients=16,
        after=lambda run: redis_killed(run, fault_redis, at=0.0, down=0.2),
    )


@pytest.mark.soak
async def test_soak_every_fault(fault_redis: FaultRedis, fault_postgres: FaultPostgres) -> None:
    """``BAILEYS_FAULT_SECONDS`` (60) of load by 16 clients, the four faults in turn."""
    duration = fault_seconds(60.0)

    async def faults(run: Run) -> None:
        end = time.monotonic() + duration - 8
        each: list[Fault] = [
            lambda run: redis_blackhole(run, fault_redis, at=2.0),
            lambda run: redis_killed(run, fault_redis, at=2.0),
            lambda run: postgres_cut(run, fault_postgres, at=2.0),
            lambda run: postgres_blackhole(run, fault_postgres, at=2.0),
        ]
        cycle = itertools.cycle(each)
        while time.monotonic() < end:
            await next(cycle)(run)

    await scenario(
        "soak: write-through, every fault in turn",
        make_config(fault_redis, fault_postgres),
        faults,
        seconds=duration,
        clients=16,
    )
