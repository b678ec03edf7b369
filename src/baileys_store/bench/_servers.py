"""Server helpers: reachability, a fresh database per run, versions, sizes, the Redis floor."""

# The server drivers are optional extras: imported only when their URL is given.
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._stats import summarize

_DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "postgresql": 5432,
    "postgres": 5432,
    "mongodb": 27017,
}


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (the URL path), query kept."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def probe(url: str) -> str | None:
    """``None`` when a TCP connection to the URL's host opens within 2 s, else the reason."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    if "," in parts.netloc:  # replica-set seed lists: let the driver decide
        return None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError) as exc:
        return f"{parts.scheme} server at {host}:{port} did not answer ({type(exc).__name__})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def fresh_name() -> str:
    """A database name no other run uses."""
    return f"bs_bench_{uuid.uuid4().hex[:10]}"


async def create_postgres_db(dsn: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Create a fresh database on the server of ``dsn``; return its DSN and a dropper."""
    import psycopg

    name = fresh_name()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return with_database(dsn, name), drop


async def drop_mongo_db(uri: str) -> None:
    """Drop the database named in ``uri``."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        await client.drop_database(client.get_default_database().name)
    finally:
        await client.close()


async def redis_unlink_namespace(url: str, namespace: str) -> int:
    """Delete every Redis key that mentions ``namespace`` (a safety net after cleanup)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            deleted += int(await client.unlink(key))
    finally:
        await client.aclose()
    return deleted


async def redis_memory(url: str) -> int:
    """``used_memory`` of the Redis server."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("memory")
        return int(info["used_memory"])
    finally:
        await client.aclose()


async def postgres_size(dsn: str) -> int:
    """``pg_database_size`` of the DSN's database."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_database_size(current_database())")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def mongo_size(uri: str) -> int | None:
    """``storageSize + indexSize`` from ``dbStats`` (None if the server does not tell)."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        stats = await client.get_default_database().command("dbStats")
        total = int(stats.get("storageSize", 0)) + int(stats.get("indexSize", 0))
        return total or int(stats.get("dataSize", 0)) or None
    except Exception:
        return None
    finally:
        await client.close()


async def server_versions(urls: dict[str, str | None]) -> dict[str, str]:
    """Versions of the servers we were given and reached."""
    out: dict[str, str] = {}
    with contextlib.suppress(Exception):
        if urls.get("redis"):
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(str(urls["redis"]))
            try:
                out["redis"] = str((await client.info("server"))["redis_version"])
            finally:
                await client.aclose()
    with contextlib.suppress(Exception):
        if urls.get("postgres"):
            import psycopg

            async with await psycopg.AsyncConnection.connect(str(urls["postgres"])) as conn:
                row = await (await conn.execute("SHOW server_version")).fetchone()
                out["postgres"] = str(row[0]) if row else "?"
    with contextlib.suppress(Exception):
        if urls.get("mongodb"):
            from pymongo import AsyncMongoClient

            mc: AsyncMongoClient[Any] = AsyncMongoClient(
                str(urls["mongodb"]), serverSelectionTimeoutMS=3000
            )
            try:
                out["mongodb"] = str((await mc.admin.command("buildInfo")).get("version", "?"))
            finally:
                await mc.close()
    return out


def _redis_benchmark(url: str, clients: int, requests: int) -> dict[str, Any] | None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    parts = urlsplit(url)
    cmd = [
        exe,
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "-t",
        "get",
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-q",
    ]
    shown = " ".join(cmd)
    if parts.password:
        cmd += ["-a", parts.password, "--no-auth-warning"]
    # The binary comes from PATH and every argument from the parsed URL: no shell involved.
    out = subprocess.run(  # noqa: S603
        cmd, capture_output=True, text=True, timeout=120, check=False
    ).stdout
    p50 = re.findall(r"p50=([\d.]+) msec", out)
    rps = re.findall(r"([\d.]+) requests per second", out)
    if not p50:
        return {"command": shown, "error": out.strip()[-200:]}
    return {"command": shown, "p50_ms": float(p50[-1]), "rps": float(rps[-1]) if rps else None}


# A script of the shape of ours (one hash write, a stamp bump): what a bare EVALSHA costs.
_FLOOR_SCRIPT = (
    "redis.call('HSET', KEYS[1], 'v', ARGV[1]); return redis.call('HINCRBY', KEYS[1], 'w', 1)"
)


async def _evalsha_times(client: Any, key: str, samples: int) -> list[float]:
    script = client.register_script(_FLOOR_SCRIPT)
    hkey, value = key + ":h", b"x" * 1500
    times = []
    for n in range(samples + 50):
        start = time.perf_counter_ns()
        await script(keys=[hkey], args=[value])
        if n >= 50:
            times.append((time.perf_counter_ns() - start) / 1e6)
    await client.delete(hkey)
    return times


async def measure_floor(url: str, samples: int) -> dict[str, Any]:
    """The Redis floor: ``redis-benchmark`` GET; bare redis-py GET, EVALSHA and GET+SET."""
    import redis
    import redis.asyncio as aioredis

    out: dict[str, Any] = {}
    requests = max(2000, samples * 10)
    out["redis_benchmark_c1"] = await asyncio.to_thread(_redis_benchmark, url, 1, requests)
    out["redis_benchmark_c50"] = await asyncio.to_thread(_redis_benchmark, url, 50, requests)
    key, value = f"bs-bench-floor-{uuid.uuid4().hex}", b"x" * 1500
    client = aioredis.Redis.from_url(url)
    try:
        await client.set(key, value)
        times = []
        for n in range(samples + 50):
            start = time.perf_counter_ns()
            await client.get(key)
            if n >= 50:
                times.append((time.perf_counter_ns() - start) / 1e6)
        out["redis_py_async_get"] = summarize(times)
        out["redis_py_async_evalsha"] = summarize(await _evalsha_times(client, key, samples))
        times = []
        for n in range(samples + 50):  # the loop floor: one get + one set of a session record
            start = time.perf_counter_ns()
            await client.get(key)
            await client.set(key, value)
            if n >= 50:
                times.append((time.perf_counter_ns() - start) / 1e6)
        out["redis_py_async_get_set"] = summarize(times)
        sync = redis.Redis.from_url(url)
        try:
            times = []
            for n in range(samples + 50):
                start = time.perf_counter_ns()
                sync.get(key)
                if n >= 50:
                    times.append((time.perf_counter_ns() - start) / 1e6)
            out["redis_py_sync_get"] = summarize(times)
        finally:
            sync.close()
        await client.delete(key)
    finally:
        await client.aclose()
    return out


class CommandCounter:
    """Counts MongoDB commands (pymongo command monitoring) while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.counts: dict[str, int] = {}

    def started(self, event: Any) -> None:
        """Pymongo hook: one command sent, counted as ``command`` or ``command:collection``."""
        if self.armed:
            name = event.command_name
            target = event.command.get(name)
            if isinstance(target, str):  # find/update/delete/... name their collection
                name = f"{name}:{target}"
            self.counts[name] = self.counts.get(name, 0) + 1

    def succeeded(self, event: Any) -> None:
        """Pymongo hook (unused)."""

    def failed(self, event: Any) -> None:
        """Pymongo hook (unused)."""


_COUNTER: CommandCounter | None = None


def mongo_counter() -> CommandCounter:
    """The process-wide command counter, registered with pymongo on first use.

    pymongo applies global listeners to clients created afterwards, so call this before the
    MongoDB backend opens its client.
    """
    global _COUNTER  # noqa: PLW0603 - one listener per process, registered once
    if _COUNTER is None:
        from pymongo import monitoring

        counter = CommandCounter()

        class _Listener(monitoring.CommandListener):
            def started(self, event: monitoring.CommandStartedEvent) -> None:
                counter.started(event)

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                counter.succeeded(event)

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                counter.failed(event)

        monitoring.register(_Listener())
        _COUNTER = counter
    return _COUNTER
