"""Budget guard: what one ``keys.set`` and one ``keys.get`` cost on the wire and on the loop.

Not a timing test: it counts, for each main configuration, the Redis commands a call sends (as
redis-py packs them; commands a Lua script runs inside the server are not on the wire), the
asyncio tasks it creates and the event-loop iterations it takes, and fails when a count grows
past its budget — so a change cannot quietly add a round trip or a task (issue 14, item 6).

The budgets are today's measured figures (loop iterations with a little room: a thread's
completion can land one turn later). Issue 14's write-behind target (one round trip, at most
one task and five iterations per ``set``) is met; its "one command" is not yet (on standalone
Redis the ready-index ``ZADD`` and the epoch ``GET`` could move into the script). Background
work is switched off for the measurement (no outbox worker, leases far from their renewal), and
each call is measured after warm-up, with the session's lease held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from baileys_store import AuthStore, StoreConfig
from baileys_store.observability import NullMetrics
from tests._services.redis import RedisServer, unique_prefix, with_query


@dataclass(frozen=True)
class Budget:
    """The most one call may cost, and the exact commands it sends today."""

    commands: tuple[str, ...]
    tasks: int
    turns: int


# config name -> (set budget, get budget). Measured 2026-12-04 (6 runs each; turns: max + 2).
BUDGETS: dict[str, tuple[Budget, Budget]] = {
    "embedded": (Budget((), 1, 6), Budget((), 0, 2)),
    "redis-only": (Budget(("EVALSHA",), 0, 4), Budget(("HMGET",), 0, 4)),
    "write-through": (Budget(("EVALSHA",), 1, 8), Budget((), 0, 2)),
    "write-through-noL1": (Budget(("EVALSHA",), 1, 8), Budget(("EVALSHA",), 0, 4)),
    # One round trip: the ready index (another Cluster slot), the script, the epoch read.
    "write-behind": (Budget(("ZADD", "EVALSHA", "GET"), 0, 4), Budget((), 0, 2)),
}


def _config(name: str, tmp_path: Path, redis_url: str) -> StoreConfig:
    sqlite = f"sqlite:///{tmp_path / 'b.db'}"
    cache = with_query(redis_url, prefix=unique_prefix())
    quiet: dict[str, Any] = {"lease_ttl": 60.0, "outbox_worker": False}
    if name == "embedded":
        return StoreConfig(durable=sqlite)
    if name == "redis-only":
        return StoreConfig(durable=cache, cache=None, **quiet)
    if name == "write-through":
        return StoreConfig(durable=sqlite, cache=cache, **quiet)
    if name == "write-through-noL1":
        return StoreConfig(durable=sqlite, cache=cache, l1_max_entries=0, **quiet)
    return StoreConfig(durable=sqlite, cache=cache, write_mode="write-behind", **quiet)


@dataclass
class Counts:
    """What ran between two marks: commands packed by redis-py, tasks made, loop turns."""

    commands: list[str] = field(default_factory=list)
    tasks: int = 0
    turns: int = 0


@contextmanager
def counting(loop: asyncio.AbstractEventLoop) -> Iterator[Counts]:
    """Count commands, tasks and loop iterations while the block runs (then restore all)."""
    counts = Counts()
    pack = AbstractConnection.pack_command

    def packing(self: AbstractConnection, *args: Any) -> Any:
        name = args[0]
        counts.commands.append(name if isinstance(name, str) else bytes(name).decode())
        return pack(self, *args)

    def factory(
        lp: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        counts.tasks += 1
        return asyncio.Task(coro, loop=lp, **kwargs)

    run_once = loop._run_once  # type: ignore[attr-defined]

    def turn() -> None:
        counts.turns += 1
        run_once()

    AbstractConnection.pack_command = packing  # type: ignore[method-assign]
    loop.set_task_factory(factory)  # type: ignore[arg-type]
    loop._run_once = turn  # type: ignore[attr-defined]
    try:
        yield counts
    finally:
        AbstractConnection.pack_command = pack  # type: ignore[method-assign]
        loop.set_task_factory(None)
        loop._run_once = run_once  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(BUDGETS))
async def test_one_set_and_one_get_stay_within_budget(
    name: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    set_budget, get_budget = BUDGETS[name]
    loop = asyncio.get_running_loop()
    async with AuthStore(_config(name, tmp_path, redis_server.url), metrics=NullMetrics()) as st:
        keys = st.session("budget").keys
        for _ in range(20):  # warm: lease, scripts loaded, prepared statements, encoders
            await keys.set({"session": {"1": b"x" * 1500}})
            await keys.get("session", ["1"])
        for op, budget in (("set", set_budget), ("get", get_budget)):
            await asyncio.sleep(0)  # start from an idle loop
            with counting(loop) as counts:
                if op == "set":
                    await keys.set({"session": {"1": b"z" * 1500}})
                else:
                    assert await keys.get("session", ["1"]) == {"1": b"z" * 1500}
            where = f"{name} keys.{op}()"
            assert tuple(counts.commands) == budget.commands, f"{where} commands"
            assert counts.tasks <= budget.tasks, f"{where}: {counts.tasks} tasks"
            assert counts.turns <= budget.turns, f"{where}: {counts.turns} loop turns"


async def test_the_counter_sees_commands_tasks_and_turns(redis_server: RedisServer) -> None:
    """The guard's instruments count (a guard that counts nothing would pass anything)."""
    import redis.asyncio as aredis  # noqa: PLC0415

    client = aredis.Redis.from_url(redis_server.url)
    loop = asyncio.get_running_loop()
    try:
        await client.ping()
        with counting(loop) as counts:
            await client.set("budget-probe", b"1")
            await asyncio.get_running_loop().create_task(asyncio.sleep(0))
        assert "SET" in counts.commands
        assert counts.tasks >= 1
        assert counts.turns >= 2
    finally:
        await client.aclose()
