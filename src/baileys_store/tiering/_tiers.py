"""The read and write paths through the tiers: L1 -> cache -> durable, write-through/-behind.

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
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..backends.memory import MemoryCache
from ..contracts import CacheBackend, DurableBackend, SharedCache
from ..errors import BreakerOpenError, LeaseLostError, UnavailableError
from ..observability._metrics import Metrics, NullMetrics
from ._guard import Guard
from ._lease import Lease, LeaseManager
from ._state import CREDS, SessionState, SessionStates

T = TypeVar("T")
log = logging.getLogger("baileys_store.tiers")


class Tiers:
    """Read/write paths; :class:`~baileys_store.AuthStore` forwards every operation here."""

    def __init__(
        self,
        durable: DurableBackend,
        cache: CacheBackend | None,
        *,
        guard: Guard,
        l1: MemoryCache | None = None,
        leases: LeaseManager | None = None,
        write_behind: bool = False,
        buffer_on_outage: bool = False,
    ) -> None:
        self.durable, self.cache, self.l1, self.leases = durable, cache, l1, leases
        self.guard = guard
        self.write_behind = write_behind
        self.buffer = buffer_on_outage and cache is not None and cache.shared
        self.states = SessionStates(lock_timeout=getattr(guard, "timeout", None))
        self.shared = cast(SharedCache, cache) if cache is not None and cache.shared else None
        self.untrusted: set[SessionAddr] = set()
        # Sessions with outbox entries pending -> the last sequence known appended. While a
        # session is here its writes go through the outbox too (never overtaking an entry).
        self.behind: dict[SessionAddr, int] = {}
        self.on_append: Callable[[], None] = lambda: None
        self.metrics: Metrics = NullMetrics()

    def drained(self, addr: SessionAddr, applied: int) -> None:
        """The outbox of ``addr`` is applied up to ``applied`` (called by the worker)."""
        if self.behind.get(addr, 0) <= applied:
            self.behind.pop(addr, None)

    async def refresh_behind(self) -> None:
        """Forget sessions another worker drained (their counters say so)."""
        shared = self.shared
        if shared is None:
            return
        count, oldest = await self.guard("cache", "ready_summary", shared.outbox.ready_summary)
        self.metrics.outbox(count, max(time.time() - oldest, 0.0) if oldest else 0.0)
        for addr in list(self.behind):
            appended, applied, _ = await self.guard(
                "cache",
                "outbox_counters",
                lambda a=addr: shared.outbox.outbox_counters(a),  # type: ignore[misc]
            )
            if appended <= applied:
                self.drained(addr, applied)

    # -- which tiers a session may use ------------------------------------------------------

    async def _lease(self, addr: SessionAddr, *, write: bool) -> Lease | None:
        if self.leases is None:
            return None
        lease = await self.leases.get(addr, write=write)
        if lease is not None and not lease.checked and self.shared is not None:
            # A previous holder may have left outbox entries: keep their order.
            shared = self.shared
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
            lease.checked = True
        return lease

    def _owner_cache(self, addr: SessionAddr, lease: Lease | None) -> CacheBackend | None:
        """The cache this process may read, fill and update for the session."""
        cache = self.cache
        if cache is None or addr in self.untrusted:
            return None
        if cache.shared and self.leases is not None and lease is None:
            return None
        return cache

    def _l1(self, addr: SessionAddr, lease: Lease | None) -> MemoryCache | None:
        if self.l1 is None or lease is None or not lease.fresh() or addr in self.untrusted:
            return None
        return self.l1

    def _l1_write(self, addr: SessionAddr, lease: Lease | None) -> MemoryCache | None:
        """L1 for a write to update, or None, and then L1 forgets the session.

        A write L1 does not take (its lease not renewed lately, e.g. an event loop that fell
        behind) must not leave the old values there for when the lease is fresh again.
        """
        l1 = self._l1(addr, lease)
        if l1 is None:
            self.lost(addr)
        return l1

    def _primary(self, addr: SessionAddr) -> bool:
        """True when the shared cache holds data the durable tier may not have yet."""
        return (
            self.cache is not None
            and self.cache.shared
            and (self.write_behind or addr in self.behind)
        )

    async def _reader(self, addr: SessionAddr) -> CacheBackend | None:
        """The cache a process that does not own the session reads (no fills), if any.

        The durable tier is current unless the session has outbox entries pending (write-behind,
        or its owner buffering through a durable outage): then the shared cache is, so ask it.
        """
        shared = self.shared
        if shared is None:
            return None
        if self._primary(addr):
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

    def lost(self, addr: SessionAddr) -> None:
        """Lease lost: forget what L1 holds for the session."""
        if self.l1 is not None:
            self.l1.forget(addr)

    def _distrust(self, addr: SessionAddr) -> None:
        self.untrusted.add(addr)
        self.lost(addr)

    async def _fenced(self, addr: SessionAddr, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except LeaseLostError:
            self.metrics.fenced_write()
            if self.leases is not None:
                self.leases.mark_lost(addr)
            self.lost(addr)
            raise

    # -- reads -------------------------------------------------------------------------------

    async def get_blobs(self, addr: SessionAddr, key_type: str, ids: list[str]) -> dict[str, bytes]:
        """Blobs of the ids found: L1, then the cache, then the durable tier for the rest."""
        async with self.states.use(addr) as state:
            lease = await self._lease(addr, write=False)
            start = state.gen  # a write from here on makes what this read saw too old for L1
            found: dict[str, bytes] = {}
            # Records of a write in flight are skipped in L1 (updated last) and, in
            # write-through, in the cache too (updated after the durable tier); a write-behind
            # cache changes in one step with its outbox, so nothing there can be torn.
            cached = state.cached(key_type, ids)
            l1 = self._l1(addr, lease)
            if l1 is not None and cached:
                found = (await l1.read_keys(addr, key_type, cached)).found
                self.metrics.cache_lookup("l1", len(found), len(cached) - len(found))
                if len(found) == len(ids):
                    return found
            if self._primary(addr):
                cached = ids
            owner = self._owner_cache(addr, lease)
            reader = owner or await self._reader(addr)
            absent: frozenset[str] = frozenset()
            stamp = None
            rest = [i for i in cached if i not in found]
            if reader is not None and rest:
                hit = await self._read_cache(
                    addr, "read_keys", lambda: reader.read_keys(addr, key_type, rest)
                )
                if hit is not None:
                    found.update(hit.found)
                    absent, stamp = hit.absent, hit.stamp
                    known = len(hit.found) + len(hit.absent)
                    self.metrics.cache_lookup("cache", known, len(rest) - known)
                    if l1 is not None and hit.found and state.quiet_since(start):
                        await l1.fill_keys(addr, _upserts(key_type, hit.found), stamp=0, token=None)
            misses = [i for i in ids if i not in found and i not in absent]
            if not misses:
                return found
            if self.cache is not None:
                self.metrics.durable_fallback(self._why(addr, reader), len(misses))
            gen = state.gen
            loaded = await self.guard(
                "durable", "get_keys", lambda: self.durable.get_keys(addr, key_type, misses)
            )
            if loaded and owner is not None and stamp is not None and state.quiet_since(gen):
                await self._fill(
                    addr,
                    _upserts(key_type, loaded),
                    cache=owner,
                    l1=l1,
                    lease=lease,
                    state=state,
                    gen=gen,
                    stamp=stamp,
                )
            found.update(loaded)
            return found

    def _why(self, addr: SessionAddr, reader: CacheBackend | None) -> str:
        if reader is not None:
            return "miss"
        return "untrusted" if addr in self.untrusted else "not_owner"

    async def _read_cache(
        self, addr: SessionAddr, op: str, fn: Callable[[], Awaitable[T]]
    ) -> T | None:
        try:
            return await self.guard("cache", op, fn)
        except UnavailableError as exc:
            reason = "breaker_open" if isinstance(exc, BreakerOpenError) else "cache_error"
            self.metrics.durable_fallback(reason)
            if self._primary(addr):
                raise  # the durable tier may be behind: never serve it as current
            return None  # the durable tier has everything: read around the cache

    async def _fill(
        self,
        addr: SessionAddr,
        writes: list[KeyWrite],
        *,
        cache: CacheBackend,
        l1: MemoryCache | None,
        lease: Lease | None,
        state: SessionState,
        gen: int,
        stamp: int,
    ) -> None:
        token = lease.token if lease else None
        try:
            stored = await self.guard(
                "cache",
                "fill_keys",
                lambda: cache.fill_keys(addr, writes, stamp=stamp, token=token),
            )
        except LeaseLostError:
            self.metrics.cache_fill("failed")
            if self.leases is not None:
                self.leases.mark_lost(addr)
            return
        except UnavailableError:
            self.metrics.cache_fill("failed")
            return  # a cache that cannot be warmed is only slower
        self.metrics.cache_fill("stored" if stored else "skipped")
        if stored and l1 is not None and state.quiet_since(gen):
            await l1.fill_keys(addr, writes, stamp=0, token=None)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds record: cache, then durable (and fill)."""
        async with self.states.use(addr) as state:
            lease = await self._lease(addr, write=False)
            owner = self._owner_cache(addr, lease)
            reader = owner or await self._reader(addr)
            stamp = None
            if reader is not None and (self._primary(addr) or state.cached(CREDS[0], [CREDS[1]])):
                hit = await self._read_cache(addr, "read_creds", lambda: reader.read_creds(addr))
                if hit is not None:
                    if hit.known:
                        return hit.record
                    stamp = hit.stamp
            gen = state.gen
            record = await self.guard(
                "durable", "load_creds", lambda: self.durable.load_creds(addr)
            )
            if owner is not None and stamp is not None and state.quiet_since(gen):
                token = lease.token if lease else None
                with contextlib.suppress(UnavailableError, LeaseLostError):  # only slower
                    await self.guard(
                        "cache",
                        "put_creds_guarded",
                        lambda: owner.put_creds_guarded(addr, record, token=token, stamp=stamp),
                    )
            return record


def _upserts(key_type: str, blobs: dict[str, bytes]) -> list[KeyWrite]:
    return [KeyWrite(key_type, i, b) for i, b in blobs.items()]
