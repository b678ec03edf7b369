"""Assemble the engine for a configuration: cache tier, L1, leases, outbox worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .._model import SessionAddr
from ..backends.memory import MemoryCache
from ..contracts import CacheBackend, DurableBackend, LeaseBackend
from ..errors import ConfigError
from ..observability._metrics import Metrics
from ._guard import TierGuard
from ._lease import LeaseManager
from ._reset import ResetWatch, WatchedEngine
from ._worker import OutboxWorker
from ._writes import Engine

if TYPE_CHECKING:
    from .._config import StoreConfig
    from ..backends._redis_hybrid import RedisHybridCache
    from ..backends._redis_outbox import RedisOutbox


def _tier(cache: CacheBackend | None) -> CacheBackend | None:
    if cache is None:
        return None
    if not hasattr(cache, "read_keys"):
        raise ConfigError(f"cache backend {cache.name!r} does not support the cache tier API")
    return cache


def _outbox_event(metrics: Metrics, event: str, n: int) -> None:
    if event == "applied":
        metrics.outbox_applied(n)
    elif event == "retry":
        metrics.outbox_retry()
    elif event == "dead_letter":
        metrics.outbox_dead_letter()


def build_engine(
    config: StoreConfig,
    durable: DurableBackend,
    cache: CacheBackend | None,
    guard: TierGuard,
    metrics: Metrics,
) -> tuple[Engine, OutboxWorker | None]:
    """The engine and, with a Redis cache, the outbox worker (started by the store)."""
    tier = _tier(cache)
    shared = tier is not None and tier.shared
    engine = (WatchedEngine if shared else Engine)(
        durable,
        tier,
        guard=guard,
        write_behind=config.write_mode == "write-behind",
        buffer_on_outage=config.durable_outage == "buffer",
    )
    engine.metrics = metrics
    if config.leases:
        backend: object = tier if shared else durable
        if not isinstance(backend, LeaseBackend):
            name = getattr(backend, "name", "?")
            raise ConfigError(f"backend {name!r} cannot keep leases; set lease='off'")
        engine.leases = LeaseManager(
            backend,
            durable,
            tier="cache" if shared else "durable",
            ttl=config.lease_ttl,
            wait=config.lease_wait,
            guard=guard,
            on_lost=engine.lost,
            on_event=metrics.lease_event,
        )
        if shared and config.l1_max_entries:
            engine.l1 = MemoryCache(config.l1_max_entries)
    if not shared:
        return engine, None
    assert isinstance(engine, WatchedEngine)
    cast("RedisHybridCache", tier).pending = engine.behind  # reads check their stamp (_reset)
    engine.watch = ResetWatch(
        cast("RedisHybridCache", tier),
        durable=durable,
        guard=guard,
        metrics=metrics,
        behind=engine.behind,
        l1=engine.l1,
    )
    worker = OutboxWorker(
        cast("RedisOutbox", tier),
        durable,
        guard=guard,
        batch=config.outbox_batch,
        max_attempts=config.outbox_max_attempts,
        claim_timeout=config.outbox_claim_timeout,
        on_drained=engine.drained,
        on_idle=engine.refresh_behind,
        on_event=lambda event, n: _outbox_event(metrics, event, n),
    )
    engine.on_append = worker.notify

    async def drain(addr: SessionAddr) -> None:
        await worker.drain(addr, wait=config.op_timeout)

    engine.drain = drain
    return engine, worker
