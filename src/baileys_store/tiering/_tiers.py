"""The tiers of one store, and the rules for which of them a session may use.

One engine serves every configuration: durable alone, durable + in-process cache (the embedded
default), and the hybrid store (Redis cache over a durable tier, with leases, an optional L1 and
the outbox). What changes between them is which caches a session may trust:

- an in-process cache is trusted unless a cache update failed after a durable write
  (``untrusted``: bypassed until a write manages to drop the session's entries);
- a shared (Redis) cache only by the session's lease holder: the holder orders every write
  (durable first, then cache), a new holder drops what a previous one may have left stale, and
  a fenced holder can no longer write anything. Other processes read the durable tier — except
  in write-behind, where Redis is the primary until the outbox is drained, so everyone reads it;
- L1 only while the lease is fresh.

:class:`Tiers` holds that state; the read path (``_read.py``) and the write path
(``_write.py``) both decide through it. Lease loss is handled in one place, :meth:`lease_lost`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from .._model import SessionAddr
from ..backends.memory import MemoryCache
from ..contracts import CacheBackend, DurableBackend, SharedCache
from ..errors import LeaseLostError, StoreClosedError, StoreError, UnavailableError, result_of
from ..observability._metrics import Metrics
from ..observability._tracing import GATE, span
from ..resilience import TierGuard
from ._lease import Lease, LeaseManager
from ._reset import ResetWatch
from ._state import SessionStates

if TYPE_CHECKING:
    from ._broker import BrokerLog

T = TypeVar("T")
log = logging.getLogger("baileys_store.tiers")


class Tiers:
    """The tiers, their guard and the per-session bookkeeping the two paths share."""

    def __init__(
        self,
        durable: DurableBackend,
        cache: CacheBackend | None,
        shared: SharedCache | None,
        *,
        guard: TierGuard,
        metrics: Metrics,
        leases: LeaseManager | None,
        l1: MemoryCache | None,
        watch: ResetWatch | None,
        behind: dict[SessionAddr, int],
        write_behind: bool,
        buffer_on_outage: bool,
    ) -> None:
        self.durable, self.cache, self.shared = durable, cache, shared
        self.guard, self.metrics, self.leases, self.l1, self.watch = (
            guard,
            metrics,
            leases,
            l1,
            watch,
        )
        self.write_behind = write_behind
        self.buffer = buffer_on_outage and shared is not None
        self.states = SessionStates(lock_timeout=guard.timeout)
        self.untrusted: set[SessionAddr] = set()
        # Sessions with outbox entries pending -> the last sequence known appended. While a
        # session is here its writes go through the outbox too (never overtaking an entry).
        self.behind = behind
        self.broker: BrokerLog | None = None  # a broker outbox (set by the engine)
        self.open = False

    # -- one store operation: closed check, span, metrics ------------------------------------

    async def run(self, op: str, addr: SessionAddr, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation, counted by outcome (labels never name the session).

        The two hot paths (``Writes.write_keys``, ``Reads.get_blobs``) do the same inline.
        """
        if not self.open:
            raise closed()
        start = time.perf_counter()
        result = "ok"
        try:
            if time.monotonic() < GATE.off_until:
                return await fn()
            with self.span(op, addr):
                return await fn()
        except StoreError as exc:
            result = self.failed(exc)
            raise
        finally:
            self.observed(op, addr, result, start)

    def span(self, op: str, addr: SessionAddr) -> AbstractContextManager[Any]:
        """The tracing span of one store operation (attributes never name the session)."""
        return span(
            f"baileys_store.{op}",
            system=self.durable.name,
            operation=op,
            namespace=addr.namespace,
            tier="store",
        )

    def failed(self, exc: StoreError) -> str:
        """The result label of a failed operation (a version conflict is counted too)."""
        result = result_of(exc)
        if result == "conflict":
            self.metrics.version_conflict()
        return result

    def observed(self, op: str, addr: SessionAddr, result: str, start: float) -> None:
        """Record one finished store operation and the sessions in use."""
        metrics, leases = self.metrics, self.leases
        metrics.observe_op(op, "store", result, time.perf_counter() - start, addr.namespace)
        held = len(leases.held) if leases is not None else 0
        metrics.sessions_in_use(max(len(self.states), held))

    # -- which tiers a session may use ------------------------------------------------------

    async def lease(self, addr: SessionAddr, *, write: bool) -> Lease | None:
        """The session's lease (acquired if needed); ``None`` without leases or for a reader."""
        if self.leases is None:
            return None
        lease = await self.leases.get(addr, write=write)
        shared = self.shared
        if lease is not None and not lease.checked and shared is not None:
            # A previous holder may have left outbox entries: keep their order.
            try:
                appended, applied, _ = await self.guard(
                    "cache", "outbox_counters", lambda: shared.outbox.outbox_counters(addr)
                )
            except UnavailableError:
                if write:
                    raise
                return None
            if appended > applied:
                self.behind[addr] = max(self.behind.get(addr, 0), appended)
            if self.broker is not None:
                # After a cache data loss the broker may hold entries the cache lost: apply
                # them before this holder reads around the cache (one broker read).
                try:
                    await self.broker.before_apply(addr)
                except UnavailableError:
                    if write:
                        raise
                    return None
            lease.checked = True
        return lease

    def owner_cache(self, addr: SessionAddr, lease: Lease | None) -> CacheBackend | None:
        """The cache this process may read, fill and update for the session."""
        cache = self.cache
        if cache is None or addr in self.untrusted:
            return None
        if cache.shared and self.leases is not None and lease is None:
            return None
        return cache

    def l1_for(self, addr: SessionAddr, lease: Lease | None) -> MemoryCache | None:
        """L1, when the session's lease is fresh enough to trust it."""
        if self.l1 is None or lease is None or not lease.fresh() or addr in self.untrusted:
            return None
        return self.l1

    def l1_write(self, addr: SessionAddr, lease: Lease | None) -> MemoryCache | None:
        """L1 for a write to update, or None, and then L1 forgets the session.

        A write L1 does not take (its lease not renewed lately, e.g. an event loop that fell
        behind) must not leave the old values there for when the lease is fresh again.
        """
        l1 = self.l1_for(addr, lease)
        if l1 is None:
            self.forget(addr)
        return l1

    def primary(self, addr: SessionAddr) -> bool:
        """True when the shared cache holds data the durable tier may not have yet."""
        return self.shared is not None and (self.write_behind or addr in self.behind)

    async def reader(self, addr: SessionAddr) -> CacheBackend | None:
        """The cache a process that does not own the session reads (no fills), if any.

        The durable tier is current unless the session has outbox entries pending (write-behind,
        or its owner buffering through a durable outage): then the shared cache is, so ask it.
        """
        shared = self.shared
        if shared is None:
            return None
        if self.primary(addr):
            return shared
        try:
            appended, applied, _ = await self.guard(
                "cache", "outbox_counters", lambda: shared.outbox.outbox_counters(addr)
            )
        except UnavailableError:
            # Redis is down: serve from the durable tier (the degraded mode). Entries could be
            # pending unseen only if the durable tier had been down too just before.
            return None
        return shared if appended > applied else None

    def forget(self, addr: SessionAddr) -> None:
        """L1 forgets the session (its lease is gone or not fresh)."""
        if self.l1 is not None:
            self.l1.forget(addr)

    def lease_lost(self, addr: SessionAddr, *, fenced: bool = True) -> None:
        """The one place a lost lease is handled: counted, marked, and L1 forgotten."""
        if fenced:
            self.metrics.fenced_write()
        if self.leases is not None:
            self.leases.mark_lost(addr)
        self.forget(addr)

    def distrust(self, addr: SessionAddr) -> None:
        """Bypass the session's cache entries until a write manages to drop them."""
        self.untrusted.add(addr)
        self.forget(addr)

    async def fenced(self, addr: SessionAddr, aw: Awaitable[T]) -> T:
        """``await aw``; a :class:`LeaseLostError` from the cache means the lease is gone."""
        try:
            return await aw
        except LeaseLostError:
            self.lease_lost(addr)
            raise

    async def evict(self, addr: SessionAddr, token: int | None) -> None:
        """Drop the session's cached records; a cache that cannot is distrusted instead."""
        self.forget(addr)
        cache = self.cache
        if cache is None or addr in self.untrusted:
            return
        try:
            await self.guard("cache", "drop", lambda: cache.drop(addr, token=token))
        except Exception:
            self.distrust(addr)

    # -- bringing the caches in line after a durable write ------------------------------------

    def may_buffer(self, addr: SessionAddr) -> bool:
        """True when an unavailable durable tier may turn the session's write into write-behind."""
        return self.buffer and addr not in self.untrusted

    async def repair(self, addr: SessionAddr, cache: CacheBackend, token: int | None) -> bool:
        """Drop a distrusted session's cache entries; True when the cache may be used again."""
        if addr not in self.untrusted:
            return True
        try:
            await self.fenced(
                addr, self.guard("cache", "drop", lambda: cache.drop(addr, token=token))
            )
        except UnavailableError:
            return False
        self.untrusted.discard(addr)
        return True

    async def sync(
        self,
        addr: SessionAddr,
        lease: Lease | None,
        op: str,
        apply: Callable[[CacheBackend, int | None], Awaitable[object]],
        *,
        l1: bool = True,
    ) -> None:
        """Bring the caches in line after a durable write; a failure distrusts the session.

        ``apply(cache, token)`` makes the change in one cache: the shared or in-process cache
        with the lease's token, then L1 (with ``None``) when its lease is fresh (unless
        ``l1`` is False: the caller updates L1 itself, see :meth:`sync_l1`).
        """
        cache = self.cache
        if cache is None or (cache.shared and self.leases is not None and lease is None):
            return
        token = lease.token if lease else None
        try:
            if not await self.repair(addr, cache, token):
                return
            await self.fenced(addr, self.guard("cache", op, lambda: apply(cache, token)))
        except LeaseLostError:
            raise  # applied durably, but another process owns the session now: say so
        except BaseException:
            self.distrust(addr)
            # An in-process cache cannot fail for an outage; a write-behind cache is the
            # primary, so a durable change it did not take must not be reported as done.
            if self.shared is None or self.write_behind:
                raise
            log.warning(
                "cache update failed; session bypasses the cache until repaired",
                extra={"event": "cache_distrusted"},
            )
            return
        if l1:
            await self.sync_l1(addr, lease, apply)

    async def sync_l1(
        self,
        addr: SessionAddr,
        lease: Lease | None,
        apply: Callable[[CacheBackend, int | None], Awaitable[object]],
    ) -> None:
        """Make the change in L1 too, when this process may trust it for the session."""
        l1 = self.l1_write(addr, lease)
        if l1 is not None:
            await apply(l1, None)

    # -- the outbox's bookkeeping ------------------------------------------------------------

    def drained(self, addr: SessionAddr, applied: int) -> None:
        """The outbox of ``addr`` is applied up to ``applied`` (called by the worker)."""
        if self.behind.get(addr, 0) <= applied:
            self.behind.pop(addr, None)

    async def refresh_behind(self) -> None:
        """The worker's idle round: look for a reset, forget sessions another worker drained."""
        shared = self.shared
        if shared is None:
            return
        if self.watch is not None:
            await self.watch.poll()
            if self.broker is not None:  # the cache lost data: the broker's entries go first
                await self.broker.maybe_recover()
        outbox = shared.outbox
        count, oldest = await self.guard("cache", "ready_summary", outbox.ready_summary)
        self.metrics.outbox(count, max(time.time() - oldest, 0.0) if oldest else 0.0)
        for addr in list(self.behind):
            appended, applied, _ = await self.guard(
                "cache",
                "outbox_counters",
                lambda a=addr: outbox.outbox_counters(a),  # type: ignore[misc]
            )
            if appended <= applied:
                self.drained(addr, applied)


def closed() -> StoreClosedError:
    """The error of an operation on a store that is not open."""
    return StoreClosedError("the store is closed; use `async with open_store(...)`")
