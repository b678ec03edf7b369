"""Write-behind over the Redis outbox vs over NATS JetStream: set latency and outbox lag.

:func:`broker_figures` runs the same workload against both transports in one run (same Redis,
same SQLite durable tier) and returns a dict the CLI can print: ``keys.set`` p50/p99 (ms) per
transport, and the outbox lag p99 under load (ms from a write's acknowledgement until the worker
applied it, sampled by polling the durable tier's copy of marked keys).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from .._config import StoreConfig
from .._model import SessionAddr
from .._store import AuthStore


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


async def _run(config: StoreConfig, n: int, sessions: int) -> dict[str, float]:
    lat: list[float] = []
    lags: list[float] = []
    async with AuthStore(config) as store:
        durable = store.durable

        async def client(s: int) -> None:
            keys = store.session(f"b{s}", namespace="bench").keys
            for i in range(n // sessions):
                t0 = time.perf_counter()
                await keys.set({"pre-key": {str(i): {"v": i, "pad": "x" * 200}}})
                lat.append((time.perf_counter() - t0) * 1000)
                if i % 20 == 0:
                    acked = time.perf_counter()
                    addr = SessionAddr("bench", f"b{s}")
                    while not await durable.get_keys(  # noqa: ASYNC110 - polls the durable tier
                        addr, "pre-key", [str(i)]
                    ):
                        await asyncio.sleep(0.002)
                    lags.append((time.perf_counter() - acked) * 1000)

        await asyncio.gather(*(client(s) for s in range(sessions)))
        await store.drain_outbox()
    return {
        "set_p50_ms": _pct(lat, 0.5),
        "set_p99_ms": _pct(lat, 0.99),
        "lag_p99_ms": _pct(lags, 0.99),
    }


async def broker_figures(
    redis_url: str, nats_url: str, workdir: Path, *, n: int = 2000, sessions: int = 8
) -> dict[str, Any]:
    """``{"redis": {...}, "nats": {...}}``: set p50/p99 and outbox lag p99 per transport."""
    out: dict[str, Any] = {"writes": n, "sessions": sessions}
    for name, url in (("redis", "redis"), ("nats", nats_url)):
        tag = uuid.uuid4().hex[:8]
        outbox = url
        if url != "redis":
            sep = "&" if "?" in url else "?"
            outbox = f"{url}{sep}stream=B{tag}&prefix=b{tag}"
        config = StoreConfig(
            durable=f"sqlite:///{workdir / f'{name}-{tag}.db'}",
            cache=f"{redis_url}{'&' if '?' in redis_url else '?'}prefix=b{tag}&ttl=600",
            write_mode="write-behind",
            outbox=outbox,
        )
        out[name] = await _run(config, n, sessions)
    return out
