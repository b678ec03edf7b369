"""The hybrid store under real faults: Redis killed, durable tiers cut off, Redis losing data.

Concurrent clients run the Baileys pattern (per message a ``session`` read and write, some
multi-type sets) while a fault is injected. An invariant checker compares every read with
what was acknowledged. Figures (acknowledged / failed / lost writes, stale reads, breaker and
recovery times, write-behind RPO) are printed and, with ``BAILEYS_FAULT_REPORT=FILE``, appended
to FILE as JSON lines (the README quotes them). ``BAILEYS_FAULT_SECONDS`` lengthens the load
(the ``soak`` variants use it, default 30 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from tests._services.mongo import MongoServer
from tests._services.postgres import PostgresDatabase
from tests._services.redis import RedisServer, start_redis, with_query
from tests.fault._checker import Checker, Key
from tests.fault._proxy import FaultProxy

CLIENTS, SESSIONS = 6, 3


def summary(check: Checker) -> dict[str, object]:
    return {**check.report(), "read_errors": check.counts["read_errors"]}


def seconds(default: float) -> float:
    return float(os.environ.get("BAILEYS_FAULT_SECONDS", default))


def report(name: str, figures: dict[str, Any]) -> None:
    line = json.dumps({"scenario": name, **figures}, sort_keys=True)
    print(line)
    if path := os.environ.get("BAILEYS_FAULT_REPORT"):
        with Path(path).open("a") as f:
            f.write(line + "\n")


async def client_loop(store: AuthStore, ns: str, n: int, check: Checker, until: float) -> None:
    """One client: its own ``session`` record per chat, read then written per message."""
    counter = 0
    while time.monotonic() < until:
        sid = f"s{n % SESSIONS}"
        keys = store.session(sid, namespace=ns).keys
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
        except errors.StoreError:
            check.counts["read_errors"] += 1
        counter += 1
        data: dict[str, dict[str, Any]] = {"session": {kid: str(counter).encode()}}
        if counter % 5 == 0:  # a multi-type set: identity key + a consumed pre-key
            data["identity-key"] = {kid: b"\x05" + bytes(32)}
            data["pre-key"] = {str(counter - 1): None}
        ticket = check.begin_write(sid, {"session": {kid: counter}})
        try:
            await keys.set(data)
        except errors.StoreError as exc:
            check.fail(ticket, exc)
        else:
            check.ack(ticket)
        await asyncio.sleep(0.005)


async def final_state(store: AuthStore, ns: str, check: Checker) -> dict[Key, object | None]:
    out: dict[Key, object | None] = {}
    for sid, key_type, kid in check.keys():  # noqa: SIM118 - a method of the checker
        got = await store.session(sid, namespace=ns).keys.get(key_type, [kid])
        out[(sid, key_type, kid)] = int(got[kid]) if kid in got else None
    return out


async def run_load(
    store: AuthStore, ns: str, duration: float, fault: Callable[[], Awaitable[None]]
) -> Checker:
    check = Checker()
    until = time.monotonic() + duration
    clients = [client_loop(store, ns, n, check, until) for n in range(CLIENTS)]
    await asyncio.gather(fault(), *clients)
    return check


async def lost_in(store: AuthStore, ns: str, check: Checker) -> int:
    """Acknowledged writes the store no longer returns (newest value lost or rolled back)."""
    return len(check.lost_writes(await final_state(store, ns, check)))


async def lost_in_durable(config: StoreConfig, ns: str, check: Checker) -> int:
    """The same, read from the durable tier alone (the store over ``config`` is closed)."""
    async with opened(config.model_copy(update={"cache": None})) as durable_only:
        return await lost_in(durable_only, ns, check)


@asynccontextmanager
async def opened(config: StoreConfig) -> AsyncIterator[AuthStore]:
    store = AuthStore(config)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may kill (even when ``REDIS_URL`` names a shared one)."""
    server = start_redis(tmp_path)
    yield server
    server.stop()


def cache_url(server: RedisServer) -> str:
    return with_query(
        server.url,
        prefix=f"f{uuid.uuid4().hex[:8]}",
        ttl="600",
        socket_timeout="0.5",
        socket_connect_timeout="0.5",
        retries="1",
    )


FAST = {
    "op_timeout": 1.0,
    "breaker_min_calls": 5,
    "breaker_window": 2.0,
    "breaker_reset_timeout": 0.5,
    "lease_ttl": 3.0,
}


async def test_redis_killed_and_restarted_write_through(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    ns = "fault"
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'wt.db'}", cache=cache_url(own_redis), **FAST
    )

    async def fault() -> None:
        await asyncio.sleep(1.0)
        own_redis.stop()  # SIGKILL: no persistence, the restarted server is empty
        await asyncio.sleep(1.5)
        await asyncio.to_thread(own_redis.start)

    async with opened(config) as store:
        check = await run_load(store, ns, seconds(5.0), fault)
        lost = await lost_in(store, ns, check)
    lost_durable = await lost_in_durable(config, ns, check)
    report(
        "write-through, Redis SIGKILL + restart",
        {**summary(check), "lost": lost, "lost_in_durable": lost_durable},
    )
    assert check.counts["acked"] > 100
    assert (lost, lost_durable, check.counts["stale_reads"]) == (0, 0, 0)


@pytest.mark.parametrize("outage", ["buffer", "fail"])
async def test_durable_blackholed(
    outage: str, own_redis: RedisServer, postgres_db: PostgresDatabase
) -> None:
    """PostgreSQL stalls for 2.5 s. ``buffer``: writes go on through the outbox and drain once it
    is back. ``fail``: writes fail fast once the breaker opens; it closes after recovery."""
    ns = f"f{uuid.uuid4().hex[:6]}"
    proxy = FaultProxy("127.0.0.1", 5432).start()
    dsn = proxy.url_for(postgres_db.dsn)
    dsn += ("&" if "?" in dsn else "?") + "connect_timeout=1"
    config = StoreConfig(durable=dsn, cache=cache_url(own_redis), durable_outage=outage, **FAST)
    figures: dict[str, Any] = {}
    try:
        async with opened(config) as store:
            breaker, engine = store.breakers["durable"], store._engine

            async def fault() -> None:
                await asyncio.sleep(1.0)
                start = time.monotonic()
                proxy.set_blackhole()
                while time.monotonic() - start < 2.5:
                    if breaker.state == "open" and "breaker_open_s" not in figures:
                        figures["breaker_open_s"] = round(time.monotonic() - start, 3)
                    await asyncio.sleep(0.01)
                figures["sessions_buffered"] = len(engine.tiers.behind)
                proxy.set_reset()  # stalled connections die, as after a network cut
                proxy.set_pass()
                healed = time.monotonic()
                while (breaker.state != "closed" or engine.tiers.behind) and (  # noqa: ASYNC110
                    time.monotonic() - healed < 20
                ):  # polling our own state
                    await asyncio.sleep(0.01)
                figures["recovered_s"] = round(time.monotonic() - healed, 3)

            check = await run_load(store, ns, seconds(6.0), fault)
            await store.drain_outbox()
            lost = await lost_in(store, ns, check)
        lost_durable = await lost_in_durable(config, ns, check)
    finally:
        proxy.stop()
    report(
        f"write-through over PostgreSQL, PostgreSQL blackholed 2.5 s, durable_outage={outage}",
        {**summary(check), **figures, "lost": lost, "lost_in_durable": lost_durable},
    )
    assert (lost, lost_durable, check.counts["stale_reads"]) == (0, 0, 0)
    assert figures["recovered_s"] < 10
    if outage == "buffer":
        assert check.counts["failed"] <= CLIENTS  # at most the writes in flight at the cut
        assert figures["sessions_buffered"] > 0
    else:
        assert figures["breaker_open_s"] < 2.5
        assert check.counts["failed"] > 0


async def test_mongo_connections_reset_write_through(
    own_redis: RedisServer, mongo_server: MongoServer
) -> None:
    ns = f"f{uuid.uuid4().hex[:6]}"
    proxy = FaultProxy("127.0.0.1", mongo_server.port).start()
    url = proxy.url_for(mongo_server.url(f"fault{uuid.uuid4().hex[:6]}"))
    config = StoreConfig(durable=url, cache=cache_url(own_redis), **FAST)
    try:
        async with opened(config) as store:

            async def fault() -> None:
                for _ in range(3):
                    await asyncio.sleep(0.8)
                    with proxy.fault("reset"):
                        await asyncio.sleep(0.3)

            check = await run_load(store, ns, seconds(4.0), fault)
            await store.drain_outbox()
            lost = await lost_in(store, ns, check)
        lost_durable = await lost_in_durable(config, ns, check)
    finally:
        proxy.stop()
    report(
        "write-through over MongoDB, connections reset 3x",
        {**summary(check), "lost": lost, "lost_in_durable": lost_durable},
    )
    assert check.counts["acked"] > 20
    assert (lost, lost_durable, check.counts["stale_reads"]) == (0, 0, 0)


@pytest.mark.parametrize("fsync", ["always", "everysec", "no-aof"])
async def test_write_behind_rpo_when_redis_crashes(fsync: str, tmp_path: Path) -> None:
    """Acknowledged write-behind entries lost when Redis is SIGKILLed: the RPO, measured.

    A killed process loses nothing its append-only file holds (written to the OS on every
    event-loop turn, fsynced per ``appendfsync``); without AOF everything not drained is lost.
    """
    aof = (
        ("--appendonly", "no")
        if fsync == "no-aof"
        else ("--appendonly", "yes", "--appendfsync", fsync)
    )
    server = start_redis(tmp_path, *aof)
    ns = "rpo"
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'wb.db'}",
        cache=cache_url(server),
        write_mode="write-behind",
        outbox_worker=False,
        **FAST,
    )
    acked: list[tuple[float, tuple[str, str], int]] = []
    try:
        store = AuthStore(config)
        await store.open()
        until = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < until:
            n += 1
            key = (f"s{n % SESSIONS}", f"{n % 50}.0")
            try:
                await store.session(key[0], namespace=ns).keys.set(
                    {"session": {key[1]: str(n).encode()}}
                )
            except errors.StoreError:
                continue
            acked.append((time.monotonic(), key, n))
        crash = time.monotonic()
        server.stop()  # SIGKILL right after the last acknowledgement
        await store.close()
        await asyncio.to_thread(server.start)  # reloads the append-only file
        async with opened(config.model_copy(update={"outbox_worker": True})) as store2:
            await store2.drain_outbox()
            last: dict[tuple[str, str], tuple[float, int]] = {}
            for at, key, value in acked:
                last[key] = (at, value)
            lost_at = []
            for key, (at, value) in last.items():
                got = await store2.session(key[0], namespace=ns).keys.get("session", [key[1]])
                if got.get(key[1]) != str(value).encode():
                    lost_at.append(crash - at)
    finally:
        server.stop()
    rpo = max(lost_at, default=0.0)
    report(
        f"write-behind RPO, Redis SIGKILL, {fsync}",
        {
            "acked": len(acked),
            "keys": len(last),
            "keys_behind": len(lost_at),
            "rpo_s": round(rpo, 3),
        },
    )
    if fsync == "no-aof":
        assert len(lost_at) == len(last)  # nothing was drained: every key's last write is gone
    else:
        assert lost_at == []


@pytest.mark.soak
async def test_soak_redis_killed_repeatedly(own_redis: RedisServer, tmp_path: Path) -> None:
    """``pytest -m soak``: ``BAILEYS_FAULT_SECONDS`` (30) of load, Redis killed every 5 s."""
    ns = "soak"
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'soak.db'}", cache=cache_url(own_redis), **FAST
    )
    duration = seconds(30.0)

    async def fault() -> None:
        end = time.monotonic() + duration - 3
        while time.monotonic() < end:
            await asyncio.sleep(4.0)
            own_redis.stop()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(own_redis.start)

    async with opened(config) as store:
        check = await run_load(store, ns, duration, fault)
        lost = await lost_in(store, ns, check)
    report("soak: write-through, Redis SIGKILLed every 5 s", {**summary(check), "lost": lost})
    assert (lost, check.counts["stale_reads"]) == (0, 0)
