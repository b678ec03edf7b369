"""Aggregate health: each tier's probe, the breakers, the outbox, the leases."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..contracts import CacheBackend, DurableBackend, OutboxTransport
from ..results import StoreHealth, TierHealth

if TYPE_CHECKING:
    from ._engine import Engine

OUTBOX_LAG_DEGRADED = 60.0  # seconds of outbox lag after which the store reports degraded


async def _probe(
    backend: DurableBackend | CacheBackend | OutboxTransport, tier: str, limit: float
) -> TierHealth:
    try:
        async with asyncio.timeout(limit):
            return await backend.check()
    except TimeoutError:
        return TierHealth(backend.name, tier, False, limit * 1000, "timed out")


async def health(engine: Engine) -> StoreHealth:
    """Probe the tiers (around the breakers: a probe is never refused) and aggregate.

    See :class:`~baileys_store.StoreHealth` for what each status means.
    """
    limit = engine.config.op_timeout
    tiers = [await _probe(engine.durable, "durable", limit)]
    states: dict[str, str] = {name: b.state for name, b in engine.breakers.items()}
    durable_ok = tiers[0].ok and states["durable"] != "open"
    cache_ok = True
    if engine.cache is not None:
        tiers.append(await _probe(engine.cache, "cache", limit))
        cache_ok = tiers[-1].ok and states["cache"] != "open"
    if engine.transport is not None:  # the broker outbox: a write-behind write needs it up
        tiers.append(await _probe(engine.transport, "outbox", limit))
        cache_ok = cache_ok and tiers[-1].ok and states.get("broker") != "open"
    sessions = lag = None
    watch = engine.watch
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
    buffering = engine.tiers.buffer and cache_ok
    if engine.tiers.write_behind:
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
