"""What one ``keys.set`` / ``keys.get`` costs the event loop, per main configuration.

Counted, not timed: the Redis commands a call puts on the wire (as redis-py packs them; what a
Lua script runs inside the server is not on the wire), the asyncio tasks it creates, the loop
iterations it takes, and the CPU time of the loop's thread (``time.thread_time``: our Python,
redis-py and asyncio, not the SQLite writer thread). Issue 14 states its write-behind target in
these units (one command, ≤ 1 task, ≤ 5 iterations, ≤ 200 µs of loop CPU per ``set``).

The instruments patch redis-py's ``pack_command``, the loop's task factory and its private
``_run_once`` for the duration of one call, and restore them; the budget guard test
(``tests/integration/test_budgets.py``) uses the same :func:`counting`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from .._config import StoreConfig
from .._store import AuthStore
from ..observability import NullMetrics

CONFIGS = ("embedded", "redis-only", "write-through", "write-through-noL1", "write-behind")
VALUE = b"x" * 1500


@dataclass
class Counts:
    """What ran between two marks: commands packed by redis-py, tasks made, loop turns."""

    commands: list[str] = field(default_factory=list)
    tasks: int = 0
    turns: int = 0


@contextmanager
def counting(loop: asyncio.AbstractEventLoop) -> Iterator[Counts]:
    """Count commands, tasks and loop iterations while the block runs (then restore all)."""
    from redis.asyncio.connection import AbstractConnection  # noqa: PLC0415 (optional extra)

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


def config_for(name: str, work: Path, redis_url: str) -> StoreConfig:
    """The store configuration ``name`` (one of :data:`CONFIGS`), background work off."""
    sqlite = f"sqlite:///{work / (name + '.db')}"
    parts = urlsplit(redis_url)
    query = "&".join(filter(None, (parts.query, urlencode({"prefix": uuid.uuid4().hex[:12]}))))
    cache = parts._replace(query=query).geturl()
    quiet: dict[str, Any] = {"lease_ttl": 60.0, "outbox_worker": False}
    if name == "embedded":
        return StoreConfig(durable=sqlite)
    if name == "redis-only":
        return StoreConfig(durable=cache, cache=None, **quiet)
    if name == "write-through":
        return StoreConfig(durable=sqlite, cache=cache, **quiet)
    if name == "write-through-noL1":
        return StoreConfig(durable=sqlite, cache=cache, l1_max_entries=0, **quiet)
    if name == "write-behind":
        return StoreConfig(durable=sqlite, cache=cache, write_mode="write-behind", **quiet)
    raise ValueError(f"unknown configuration {name!r}")


async def _one(name: str, work: Path, redis_url: str, samples: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {}
    async with AuthStore(config_for(name, work, redis_url), metrics=NullMetrics()) as st:
        keys = st.session("costs").keys
        for _ in range(20):  # warm: lease, scripts loaded, statements prepared, encoders
            await keys.set({"session": {"1": VALUE}})
            await keys.get("session", ["1"])
        for op in ("set", "get"):
            cpu: list[float] = []
            tasks: list[int] = []
            turns: list[int] = []
            commands: list[str] = []
            for _ in range(samples):
                await asyncio.sleep(0)  # start each call from an idle loop
                start = time.thread_time_ns()
                with counting(loop) as counts:
                    if op == "set":
                        await keys.set({"session": {"1": VALUE}})
                    else:
                        await keys.get("session", ["1"])
                cpu.append((time.thread_time_ns() - start) / 1000)
                tasks.append(counts.tasks)
                turns.append(counts.turns)
                commands = counts.commands
            out[op] = {
                "commands": commands,
                "tasks": statistics.median(tasks),
                "turns": statistics.median(turns),
                "loop_cpu_us": statistics.median(cpu),
                "loop_cpu_us_p90": statistics.quantiles(cpu, n=10)[-1] if len(cpu) > 1 else cpu[0],
            }
    return out


async def measure_costs(redis_url: str, samples: int = 200) -> dict[str, Any]:
    """Per configuration and op: commands, median tasks / turns / loop CPU (µs)."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bs-costs-") as tmp:
        for name in CONFIGS:
            results[name] = await _one(name, Path(tmp), redis_url, samples)
    return results
