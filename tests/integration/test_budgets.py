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
from dataclasses import dataclass
from pathlib import Path

import pytest

from baileys_store import AuthStore
from baileys_store.bench._costs import config_for, counting
from baileys_store.observability import NullMetrics
from tests._services.redis import RedisServer


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
    # Write-through over Redis: the durable write runs in a task of its own, overlapping the
    # cache update (the SQLite batcher's task is the other).
    "write-through": (Budget(("EVALSHA",), 2, 8), Budget((), 0, 2)),
    "write-through-noL1": (Budget(("EVALSHA",), 2, 8), Budget(("EVALSHA",), 0, 4)),
    # One round trip: the ready index (another Cluster slot), the script, the epoch read.
    "write-behind": (Budget(("ZADD", "EVALSHA", "GET"), 0, 4), Budget((), 0, 2)),
}


@pytest.mark.parametrize("name", list(BUDGETS))
async def test_one_set_and_one_get_stay_within_budget(
    name: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    set_budget, get_budget = BUDGETS[name]
    loop = asyncio.get_running_loop()
    async with AuthStore(config_for(name, tmp_path, redis_server.url), metrics=NullMetrics()) as st:
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
