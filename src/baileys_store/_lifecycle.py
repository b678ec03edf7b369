"""Opening and closing a store's tiers, in order, and undoing a half-done open.

Split from :mod:`._store` to keep it small. The order matters: the durable tier first (it must
work), then its metadata check (encryption mode, key fingerprints) before any record is read,
then the cache and its binding to this durable tier, then the background tasks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._store_meta import verify_store_meta
from .errors import UnavailableError
from .tiering._reconnect import CacheReconnect

if TYPE_CHECKING:
    from ._store import AuthStore

log = logging.getLogger("baileys_store")


async def open_tiers(store: AuthStore) -> None:
    """See :meth:`AuthStore.open`; on failure everything opened so far is closed again."""
    guard, durable = store._guard, store.durable
    await guard("durable", "open", durable.open)
    try:
        await guard("durable", "open", lambda: verify_store_meta(durable, store.config))
    except BaseException:
        await durable.close()
        raise
    engine, worker = store._engine, store._worker
    if engine.cache is not None:
        try:
            await guard("cache", "open", engine.cache.open)
            await bind(store)
        except UnavailableError:
            if engine.write_behind or engine.shared is None:  # Redis is the primary
                await engine.cache.close()
                await durable.close()
                raise
            log.warning(
                "cache tier unavailable at start; serving from the durable tier",
                extra={"event": "cache_unavailable"},
            )
            store._reconnect = CacheReconnect(
                engine.cache,
                guard,
                lambda: bind(store),
                on_back=worker.notify if worker else lambda: None,
            )
            store._reconnect.start()
        except BaseException:
            await engine.cache.close()
            await durable.close()
            raise
    if engine.leases is not None:
        engine.leases.start()
    if worker is not None and store.config.outbox_worker:
        worker.start()


async def bind(store: AuthStore) -> None:
    """Tie a Redis cache's prefix to this durable tier (ConfigError if another has it).

    Two stores with different durable tiers under one prefix would serve each other's cached
    records and drain each other's outboxes into the wrong database. The prefix's epoch is
    read too, so a Redis that loses its data is noticed (:mod:`.tiering._reset`).
    """
    engine = store._engine
    watch = getattr(engine, "watch", None)
    if watch is not None:
        await watch.bind()
        return
    shared = engine.shared
    store_id = getattr(store.durable, "store_id", "")
    if shared is not None and store_id:
        await store._guard("cache", "bind_durable", lambda: shared.bind_durable(store_id))


async def close_tiers(store: AuthStore) -> None:
    """See :meth:`AuthStore.close`: background tasks first, then the tiers; idempotent."""
    engine = store._engine
    if store._reconnect is not None:
        await store._reconnect.stop()
    if store._worker is not None:
        await store._worker.stop()
    if engine.leases is not None:
        await engine.leases.stop()
    if engine.cache is not None:
        await engine.cache.close()
    if engine.l1 is not None:
        await engine.l1.close()
    await store.durable.close()
