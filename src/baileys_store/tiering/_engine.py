"""The engine: one object that owns the tiers, built completely in its constructor.

:class:`Engine` assembles, for one :class:`~baileys_store.StoreConfig`, the breakers and the
call guard, the session states, the leases, L1, the outbox worker, the reset watch, and the
two paths (``_read.Reads``, ``_write.Writes``) that every operation goes through; it opens and
closes the tiers in order (durable first, its metadata check, then the cache and its binding,
then the background tasks). A store hands its sessions a :class:`SessionOps`: the per-session
operations, bound to the paths (no hop through the store object on the hot path).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..backends.memory import MemoryCache
from ..contracts import CacheBackend, DurableBackend, LeaseBackend, OutboxTransport, SharedCache
from ..errors import ConfigError, UnavailableError
from ..resilience import BreakerSettings, CircuitBreaker, TierGuard
from ._broker import BrokerLog
from ._lease import LeaseManager
from ._meta import verify_store_meta
from ._read import Reads
from ._reconnect import CacheReconnect
from ._reset import ResetWatch
from ._tiers import Tiers, closed
from ._worker import OutboxWorker
from ._write import Writes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._config import StoreConfig
    from ..codec import Codec
    from ..observability._metrics import Metrics

log = logging.getLogger("baileys_store")


@dataclass(frozen=True, slots=True)
class SessionOps:
    """What a session's views (``SessionAuth``, ``KeyStore``) may do: the engine's operations.

    Each operation takes the session's address first; they are the read and write paths'
    methods themselves, so a ``keys.set()`` goes from the key store straight to the write path.
    """

    addr: SessionAddr
    codec: Codec
    metrics: Metrics
    get_blobs: Callable[[SessionAddr, str, list[str]], Awaitable[dict[str, bytes]]]
    write_keys: Callable[[SessionAddr, Sequence[KeyWrite]], Awaitable[None]]
    clear_keys: Callable[[SessionAddr], Awaitable[None]]
    load_creds: Callable[[SessionAddr], Awaitable[CredsRecord | None]]
    save_creds: Callable[[SessionAddr, bytes, int | None], Awaitable[int]]
    delete_session: Callable[[SessionAddr], Awaitable[bool]]
    durable_keys: Callable[[SessionAddr, str, list[str]], Awaitable[dict[str, bytes] | None]]
    durable_creds: Callable[[SessionAddr], Awaitable[tuple[bool, CredsRecord | None]]]
    evict: Callable[[SessionAddr], Awaitable[None]]
    key_ids: Callable[[SessionAddr], Awaitable[dict[str, list[str]]]]
    key_counts: Callable[[SessionAddr], Awaitable[dict[str, int]]]
    iter_key_ids: Callable[[SessionAddr], AsyncGenerator[tuple[str, str], None]]


class Engine:
    """Every tier of one store and the paths through them (see the module doc)."""

    def __init__(
        self,
        config: StoreConfig,
        durable: DurableBackend,
        cache: CacheBackend | None,
        *,
        codec: Codec,
        metrics: Metrics,
    ) -> None:
        self.config, self.durable, self.cache, self.codec = config, durable, cache, codec
        self.metrics = metrics
        _conforms(durable, DurableBackend, "durable")
        if cache is not None:
            _conforms(cache, CacheBackend, "cache")
        shared = cache if isinstance(cache, SharedCache) and cache.shared else None
        if cache is not None and cache.shared and shared is None:
            raise ConfigError(f"cache backend {cache.name!r} is shared but has no outbox")
        if config.outbox != "redis" and cache is not None and shared is None:
            raise ConfigError(  # never a broker URL accepted and then ignored
                f"outbox: a broker outbox needs the Redis cache (this cache is {cache.name!r})"
            )
        self.shared = shared
        settings = BreakerSettings.from_config(config)
        tiers: tuple[str, ...] = ("durable", "cache") if cache is not None else ("durable",)
        if shared is not None and config.outbox != "redis":
            tiers = (*tiers, "broker")  # a broker outbox: its calls fail fast while it is down
        self.breakers = {
            t: CircuitBreaker(t, settings, on_transition=self._transition)
            for t in dict.fromkeys(("durable", "cache", *tiers))
        }
        for tier in tiers:  # a gauge with labels has no sample until set: "closed" from the start
            metrics.breaker_state(tier, self.breakers[tier].state)
        self.guard = TierGuard(
            self.breakers,
            config.op_timeout,
            abandon_durable=not durable.cancels_promptly,
            local_cache=cache is not None and cache.in_process,
            observe=metrics.observe_op,
        )
        # L1 only over a shared cache, and only with leases (it is trusted while one is fresh).
        keep_l1 = shared is not None and config.leases and config.l1_max_entries > 0
        self.l1 = MemoryCache(config.l1_max_entries) if keep_l1 else None
        self.leases = self._leases(config, durable, shared)
        behind: dict[SessionAddr, int] = {}
        self.watch = (
            ResetWatch(
                shared,
                durable=durable,
                guard=self.guard,
                metrics=metrics,
                behind=behind,
                l1=self.l1,
            )
            if shared is not None
            else None
        )
        self.tiers = Tiers(
            durable,
            cache,
            shared,
            guard=self.guard,
            metrics=metrics,
            leases=self.leases,
            l1=self.l1,
            watch=self.watch,
            behind=behind,
            write_behind=config.write_mode == "write-behind",
            buffer_on_outage=config.durable_outage == "buffer",
        )
        self.transport = _transport(config) if shared is not None else None
        self.broker = (
            BrokerLog(
                self.transport,
                shared,
                durable,
                guard=self.guard,
                track_positions=config.outbox_worker,
                resets=self._resets,
                rebinding=lambda: self.watch is not None and self.watch.changed,
                poll=self.watch.poll if self.watch is not None else None,
                on_recovered=self._recovered,
            )
            if self.transport is not None and shared is not None
            else None
        )
        self.tiers.broker = self.broker
        self.worker = (
            OutboxWorker(
                shared.outbox,
                durable,
                guard=self.guard,
                batch=config.outbox_batch,
                max_attempts=config.outbox_max_attempts,
                claim_timeout=config.outbox_claim_timeout,
                on_drained=self.tiers.drained,
                on_idle=self.tiers.refresh_behind,
                on_event=self._outbox_event,
                broker=self.broker,
            )
            if shared is not None
            else None
        )
        self.reads = Reads(self.tiers)
        self.writes = Writes(self.tiers, self.worker, drain_wait=config.op_timeout)
        self.reconnect = (
            CacheReconnect(
                shared,
                self.guard,
                self._bind,
                on_back=self.worker.notify if self.worker is not None else lambda: None,
            )
            if shared is not None
            else None
        )

    def _leases(
        self, config: StoreConfig, durable: DurableBackend, shared: SharedCache | None
    ) -> LeaseManager | None:
        if not config.leases:
            return None
        backend: object = shared if shared is not None else durable
        if not isinstance(backend, LeaseBackend):
            name = shared.name if shared is not None else durable.name
            raise ConfigError(f"backend {name!r} cannot keep leases; set lease='off'")
        l1 = self.l1
        return LeaseManager(
            backend,
            durable,
            tier="cache" if shared is not None else "durable",
            ttl=config.lease_ttl,
            wait=config.lease_wait,
            guard=self.guard,
            on_lost=l1.forget if l1 is not None else lambda addr: None,
            on_event=self.metrics.lease_event,
        )

    def ops(self, addr: SessionAddr) -> SessionOps:
        """The operations of one session (see :class:`SessionOps`)."""
        reads, writes = self.reads, self.writes
        return SessionOps(
            addr,
            self.codec,
            self.metrics,
            reads.get_blobs,
            writes.write_keys,
            writes.clear_keys,
            reads.load_creds,
            writes.save_creds,
            writes.delete_session,
            reads.durable_keys,
            reads.durable_creds,
            reads.evict,
            self.key_ids,
            self.key_counts,
            self.iter_key_ids,
        )

    async def drain_outbox(self) -> int:
        """Apply every outbox entry appended so far (see ``AuthStore.drain_outbox``)."""
        if self.worker is None:
            return 0
        extra = list(self.tiers.behind)  # this process's pending sessions, even if unindexed
        return await self.worker.barrier(extra, wait=self.config.op_timeout)

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncGenerator[tuple[str, str], None]:
        """Every ``(type, id)`` of the session in ``(type, id)`` order, page by page.

        The durable tier's listing, after draining the outbox (write-behind entries not drained
        yet belong in it).
        """
        if not self.tiers.open:
            raise closed()
        await self.drain_outbox()
        async for pair in self.durable.iter_key_ids(addr):
            yield pair

    async def key_ids(self, addr: SessionAddr) -> dict[str, list[str]]:
        """``{type: [ids]}`` of every key the session holds (see :meth:`iter_key_ids`)."""
        out: dict[str, list[str]] = {}
        async for key_type, key_id in self.iter_key_ids(addr):
            out.setdefault(key_type, []).append(key_id)
        return out

    async def key_counts(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, from the durable tier."""
        if not self.tiers.open:
            raise closed()
        await self.drain_outbox()
        return await self.durable.count_keys(addr)

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self.tiers.open

    # -- opening and closing, in order -------------------------------------------------------

    async def open(self) -> None:
        """Open the tiers; on failure everything opened so far is closed again."""
        guard, durable, config = self.guard, self.durable, self.config
        await guard("durable", "open", durable.open)
        try:
            await guard("durable", "open", lambda: verify_store_meta(durable, config))
        except BaseException:
            await durable.close()
            raise
        cache = self.cache
        if cache is not None:
            try:
                await guard("cache", "open", cache.open)
                await self._bind()
            except UnavailableError:
                if self.tiers.write_behind or self.reconnect is None:  # Redis is the primary
                    await cache.close()
                    await durable.close()
                    raise
                log.warning(
                    "cache tier unavailable at start; serving from the durable tier",
                    extra={"event": "cache_unavailable"},
                )
                self.reconnect.start()
            except BaseException:
                await cache.close()
                await durable.close()
                raise
        if self.transport is not None:
            await self._open_broker()
        if self.leases is not None:
            self.leases.start()
        if self.worker is not None and config.outbox_worker:
            self.worker.start()
        self.tiers.open = True

    async def _open_broker(self) -> None:
        """Connect the broker outbox; apply what it kept from before a cache data loss."""
        assert self.transport is not None
        assert self.broker is not None
        assert self.cache is not None
        try:
            await self.transport.open()
            if self.config.outbox_worker:
                await self.broker.recover_all()
        except BaseException:
            await self.transport.close()
            await self.cache.close()
            await self.durable.close()
            raise

    async def _bind(self) -> None:
        """Tie a Redis cache's prefix to this durable tier (see ``_reset.ResetWatch.bind``)."""
        if self.watch is not None:
            await self.watch.bind()

    async def close(self) -> None:
        """Stop the background tasks, release leases, close the tiers; idempotent."""
        self.tiers.open = False
        if self.reconnect is not None:
            await self.reconnect.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.leases is not None:
            await self.leases.stop()
        if self.transport is not None:
            await self.transport.close()
        if self.cache is not None:
            await self.cache.close()
        if self.l1 is not None:
            await self.l1.close()
        await self.durable.close()

    # -- callbacks ---------------------------------------------------------------------------

    def _resets(self) -> int:
        return self.watch.resets if self.watch is not None else 0

    def _recovered(self) -> None:
        """A broker recovery after a cache reset: no acknowledged write of this process is lost."""
        if self.watch is not None and self.watch.lost:
            log.warning(
                "the broker outbox had every entry the cache lost: sessions no longer marked lost",
                extra={"event": "outbox_recovered"},
            )
            self.watch.lost.clear()

    def _transition(self, tier: str, old: str, new: str) -> None:
        self.metrics.breaker_state(tier, new)
        log.warning(
            "circuit breaker %s: %s -> %s",
            tier,
            old,
            new,
            extra={"event": "breaker_transition", "tier": tier, "state": new},
        )

    def _outbox_event(self, event: str, n: int) -> None:
        if event == "applied":
            self.metrics.outbox_applied(n)
        elif event == "retry":
            self.metrics.outbox_retry()
        elif event == "dead_letter":
            self.metrics.outbox_dead_letter()


def _transport(config: StoreConfig) -> OutboxTransport | None:
    """The broker outbox transport ``config.outbox`` names (``None``: the Redis outbox)."""
    if config.outbox == "redis":
        return None
    try:
        from ..backends.nats import NatsTransport  # noqa: PLC0415 - the optional [nats] extra
    except ImportError:
        raise ConfigError(
            "outbox: a nats:// outbox needs nats-py (pip install 'baileys-store[nats]')"
        ) from None
    return NatsTransport(config.outbox, timeout=config.op_timeout)


def _conforms(backend: object, contract: type, tier: str) -> None:
    """Refuse, at construction, a backend that lacks part of its tier's contract."""
    if not isinstance(backend, contract):
        name = type(backend).__name__
        raise ConfigError(
            f"{tier} backend {name} does not implement baileys_store.contracts."
            f"{contract.__name__} (subclass it and implement every method)"
        )
