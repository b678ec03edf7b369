"""Aggregate health: each tier's probe, the breakers, the outbox, the leases."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .results import TierHealth

if TYPE_CHECKING:
    from .contracts import CacheBackend, DurableBackend
    from .resilience import CircuitBreaker
    from .tiering import Engine
    from .tiering._reset import ResetWatch

OUTBOX_LAG_DEGRADED = 60.0  # seconds of outbox lag after which the store reports degraded


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Aggregate health of the tiers.

    ``healthy``: every tier answers, no breaker is open, the outbox keeps up. ``degraded``: the
    store still serves, with less: the cache is down (reads go to the durable tier), or the
    durable tier is down behind a Redis cache that buffers writes, or the outbox lags by more
    than a minute, or Redis lost write-behind entries of sessions not yet acknowledged
    (``data_loss_sessions``; see ``AuthStore.acknowledge_data_loss``). ``unhealthy``: it cannot
    serve (the durable tier is down with nothing to buffer writes; in write-behind, Redis is
    down).

    Attributes:
        status: ``healthy``, ``degraded`` or ``unhealthy``.
        tiers: Each tier's probe.
        breakers: Tier -> breaker state (``closed``, ``open``, ``half_open``).
        outbox_sessions: Sessions with outbox entries possibly pending (``None``: no outbox).
        outbox_lag_seconds: Age of the oldest of them (``None`` when none).
        leases_held: Session leases this process holds.
        data_loss_sessions: Sessions marked lost after Redis lost its data (0: none).
        cache_resets: Times this store noticed Redis had lost its data.
    """

    status: str
    tiers: tuple[TierHealth, ...]
    breakers: dict[str, str] = field(default_factory=dict)
    outbox_sessions: int | None = None
    outbox_lag_seconds: float | None = None
    leases_held: int = 0
    data_loss_sessions: int = 0
    cache_resets: int = 0


async def _probe(
    backend: DurableBackend | CacheBackend | CacheBackend, tier: str, limit: float
) -> TierHealth:
    try:
        async with asyncio.timeout(limit):
            return await backend.check()
    except TimeoutError:
        return TierHealth(backend.name, tier, False, limit * 1000, "timed out")


async def health(
    engine: Engine, breakers: dict[str, CircuitBreaker], durable: DurableBackend, limit: float
) -> StoreHealth:
    """Probe the tiers (around the breakers: a probe is never refused) and aggregate."""
    tiers = [await _probe(durable, "durable", limit)]
    states: dict[str, str] = {name: b.state for name, b in breakers.items()}
    durable_ok = tiers[0].ok and states["durable"] != "open"
    cache_ok = True
    if engine.cache is not None:
        tiers.append(await _probe(engine.cache, "cache", limit))
        cache_ok = tiers[-1].ok and states["cache"] != "open"
    sessions = lag = None
    watch: ResetWatch | None = getattr(engine, "watch", None)
    if engine.shared is not None and cache_ok:
        try:
            async with asyncio.timeout(limit):
                sessions, oldest = await engine.shared.outbox.ready_summary()
            lag = None if oldest is None else max(time.time() - oldest, 0.0)
            engine.metrics.outbox(sessions, lag or 0.0)
            if watch is not None:  # a probe is also a chance to notice a data loss
                async with asyncio.timeout(limit):
                    await watch.poll()
        except Exception:  # a probe reports, never raises
            cache_ok = False
    buffering = engine.buffer and cache_ok
    if engine.write_behind:
        status = "healthy" if cache_ok else "unhealthy"
        if status == "healthy" and not durable_ok:
            status = "degraded"
    elif not durable_ok:
        status = "degraded" if buffering else "unhealthy"
    else:
        status = "healthy" if cache_ok else "degraded"
    if status == "healthy" and lag is not None and lag > OUTBOX_LAG_DEGRADED:
        status = "degraded"
    lost = len(watch.lost) if watch is not None else 0
    if status == "healthy" and lost:
        status = "degraded"
    held = len(engine.leases.held) if engine.leases is not None else 0
    resets = watch.resets if watch is not None else 0
    return StoreHealth(status, tuple(tiers), states, sessions, lag, held, lost, resets)
