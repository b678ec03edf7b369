"""The cost of replica acknowledgements: write-behind ``keys.set`` with 0 vs 1 ``WAIT`` ack.

:func:`replica_acks_bench` measures, in one run, a write-behind store over SQLite whose Redis
cache is a master with one replica on loopback, once with ``cache_replica_acks=0`` and once with
``=1``, for several rounds (the two configurations alternate which goes first, so a drift of the
machine hits both alike). Without a ``master_url`` it starts a throwaway ``redis-server`` master
and replica (``redis-server`` on ``PATH``) on free loopback ports, without persistence, and
stops both at the end.
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ._stats import median_of, summarize


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(workdir: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(workdir), "--repl-diskless-sync-delay", "0"]
    log = (workdir / f"redis-{port}.log").open("ab")
    try:
        # A fixed program and our own arguments (ports, a temp dir): no untrusted input.
        return subprocess.Popen(  # noqa: S603
            [*cmd, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


async def _acked(url: str, replicas: int, limit: float = 20.0) -> None:
    """Wait until a probe write on the master is acknowledged by ``replicas`` replicas."""
    import redis.asyncio as aioredis
    from redis import exceptions as rex

    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(rex.RedisError, OSError):
                await client.set("bs-bench:probe", "1")
                acked = await client.execute_command("WAIT", replicas, 200)  # type: ignore[no-untyped-call]
                if int(acked) >= replicas:
                    await client.delete("bs-bench:probe")
                    return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise RuntimeError(f"the replica did not acknowledge a write within {limit}s")


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, Path]]:
    """A master + one replica on loopback (killed at the end); the master's URL, a temp dir."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("replica-acks bench: redis-server is not on PATH")
    base = Path(tempfile.mkdtemp(prefix="bs-bench-ha-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master = _free_port()
        procs.append(_start(base, master))
        replica = _free_port()
        procs.append(_start(base, replica, "--replicaof", "127.0.0.1", str(master)))
        yield f"redis://127.0.0.1:{master}/0", base
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def _store(url: str, workdir: Path, acks: int) -> AsyncIterator[Any]:
    from .. import AuthStore, StoreConfig

    tag = uuid.uuid4().hex[:8]
    config = StoreConfig(
        durable=f"sqlite:///{workdir / f'ha-{tag}.db'}",
        cache=f"{url}?prefix=h{tag}&ttl=600",
        write_mode="write-behind",
        outbox_worker=False,  # the write path alone: no drain competing for the server
        cache_replica_acks=acks,
    )
    store = AuthStore(config)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _round(url: str, workdir: Path, acks: int, ops: int, sessions: int) -> list[float]:
    """``ops`` sequential write-behind sets over ``sessions`` sessions; latencies in ms."""
    async with _store(url, workdir, acks) as store:
        keys = [store.session(f"ha-{i}").keys for i in range(sessions)]
        for k in keys:  # leases taken and scripts loaded before the clock starts
            await k.set({"session": {"warm": b"w"}})
        blob = bytes(200)
        samples: list[float] = []
        for i in range(ops):
            k = keys[i % sessions]
            start = time.perf_counter()
            await k.set({"session": {f"{i % 50}.0": blob}})
            samples.append((time.perf_counter() - start) * 1000)
        return samples


async def replica_acks_bench(
    master_url: str | None = None, *, rounds: int = 5, ops: int = 1000, sessions: int = 8
) -> dict[str, Any]:
    """Write-behind ``keys.set`` latency with ``cache_replica_acks`` 0 and 1, same run.

    Args:
        master_url: A ``redis://`` master that has at least one replica (``None``: start a
            throwaway master + replica on loopback with ``redis-server``).
        rounds: Rounds per configuration (they alternate, the order swapped every round).
        ops: Sequential sets per round.
        sessions: Sessions the sets go round (each with its lease taken before timing).

    Returns:
        ``{"acks_0": {...}, "acks_1": {...}, "rounds": [...], "p50_extra_ms", "p99_extra_ms",
        "setup"}``: per configuration the median over rounds of p50/p95/p99/mean/min/max (ms),
        the per-round p50/p99, and the difference of the medians.
    """
    stack = contextlib.ExitStack()
    with stack:
        if master_url is None:
            master_url, workdir = stack.enter_context(_servers())
            setup = "master + 1 replica, redis-server on loopback (started by the bench)"
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bs-ha-")))
            setup = "given master"
        await _acked(master_url, 1)
        reps: dict[int, list[dict[str, float]]] = {0: [], 1: []}
        per_round: list[dict[str, Any]] = []
        for r in range(rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            row: dict[str, Any] = {"round": r + 1}
            for acks in order:
                stats = summarize(await _round(master_url, workdir, acks, ops, sessions))
                reps[acks].append(stats)
                row[f"acks_{acks}"] = {"p50": stats["p50"], "p99": stats["p99"]}
            per_round.append(row)
        zero, one = median_of(reps[0]), median_of(reps[1])
        return {
            "setup": setup,
            "ops_per_round": ops,
            "sessions": sessions,
            "acks_0": zero,
            "acks_1": one,
            "rounds": per_round,
            "p50_extra_ms": one["p50"] - zero["p50"],
            "p99_extra_ms": one["p99"] - zero["p99"],
        }
