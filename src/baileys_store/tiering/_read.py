"""The read path: L1 -> cache -> durable tier, warming the caches with a version guard.

A read takes L1 only while the session's lease is fresh, then the cache this process may use
(its own for a lease holder, the shared one for a reader while the session has outbox entries
pending), then the durable tier for the rest, and fills the caches with what it loaded unless a
write ran meanwhile (the session's write generation, and the cache's write stamp for Redis).
Records of a write in flight are skipped in L1 and, in write-through, in the cache (both are
updated after the durable tier); a write-behind cache changes in one step with its outbox.

Also here: the durable copies a damaged cached record is replaced with (``durable_keys``,
``durable_creds``, ``evict``), asked only while the durable tier is authoritative for the
session (not while the shared cache holds writes it has not got yet).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..backends.memory import MemoryCache
from ..contracts import CacheBackend
from ..errors import BreakerOpenError, LeaseLostError, StoreError, UnavailableError
from ..observability._tracing import GATE
from ._lease import Lease
from ._state import CREDS, SessionState
from ._tiers import Tiers, closed

T = TypeVar("T")


class Reads:
    """The read operations of the engine (see the module doc)."""

    def __init__(self, tiers: Tiers) -> None:
        self.t = tiers

    async def get_blobs(self, addr: SessionAddr, key_type: str, ids: list[str]) -> dict[str, bytes]:
        """Blobs of the ids found: L1, then the cache, then the durable tier for the rest."""
        t = self.t  # the hot path: Tiers.run and SessionStates.use, inline
        if not t.open:
            raise closed()
        start = time.perf_counter()
        result = "ok"
        states = t.states.by_addr
        state = states.get(addr)
        if state is None:
            state = states[addr] = SessionState()
        state.users += 1
        get = self._lookup if t.watch is None else self._watched
        try:
            if time.monotonic() < GATE.off_until:
                return await get(t, state, addr, key_type, ids)
            with t.span("get_keys", addr):
                return await get(t, state, addr, key_type, ids)
        except StoreError as exc:
            result = t.failed(exc)
            raise
        finally:
            state.users -= 1  # SessionStates.leave and Tiers.observed, inline
            if state.users == 0:
                del states[addr]
            held = len(t.leases.held) if t.leases is not None else 0
            metrics = t.metrics
            metrics.observe_op(
                "get_keys", "store", result, time.perf_counter() - start, addr.namespace
            )
            metrics.sessions_in_use(max(len(states), held))

    async def _watched(
        self, t: Tiers, state: SessionState, addr: SessionAddr, key_type: str, ids: list[str]
    ) -> dict[str, bytes]:
        """:meth:`_lookup`, refused for a session marked lost, verified after (``_reset``)."""
        watch = t.watch
        assert watch is not None
        watch.check(addr)
        try:
            found = await self._lookup(t, state, addr, key_type, ids)
        except StoreError:
            await self._lost_first(addr)
            raise
        await watch.verify(addr)
        return found

    async def _lost_first(self, addr: SessionAddr) -> None:
        """After a failed read: handle a reset its round trip noticed (``DataLossError``).

        A lost epoch or a new master era seen by the failing call is handled now, so the
        caller learns of the session's loss rather than only of the failure.
        """
        watch = self.t.watch
        if watch is not None and watch.changed:
            await watch.verify(addr)

    async def _lookup(
        self, t: Tiers, state: SessionState, addr: SessionAddr, key_type: str, ids: list[str]
    ) -> dict[str, bytes]:
        lease = await t.lease(addr, write=False) if t.leases is not None else None
        start = state.gen  # a write from here on makes what this read saw too old for L1
        found: dict[str, bytes] = {}
        cached = ids if not (state.writing or state.writing_all) else state.cached(key_type, ids)
        l1 = t.l1_for(addr, lease) if t.l1 is not None else None
        if l1 is not None and cached:
            found = (await l1.read_keys(addr, key_type, cached)).found
            t.metrics.cache_lookup("l1", len(found), len(cached) - len(found))
            if len(found) == len(ids):
                return found
        if t.shared is not None and t.primary(addr):
            cached = ids
        owner = t.owner_cache(addr, lease)
        reader = owner or await t.reader(addr)
        absent: frozenset[str] = frozenset()
        stamp = None
        rest = cached if not found else [i for i in cached if i not in found]
        if reader is not None and rest:
            hit = await self._cache(
                addr, "read_keys", lambda: reader.read_keys(addr, key_type, rest)
            )
            if hit is not None:
                if t.watch is not None:  # a watch exists only with the shared cache
                    t.watch.saw_stamp(addr, hit.stamp)
                found.update(hit.found)
                absent, stamp = hit.absent, hit.stamp
                known = len(hit.found) + len(hit.absent)
                t.metrics.cache_lookup("cache", known, len(rest) - known)
                if l1 is not None and hit.found and state.quiet_since(start):
                    await l1.fill_keys(addr, _upserts(key_type, hit.found), stamp=0, token=None)
        misses = [i for i in ids if i not in found and i not in absent]
        if misses:
            if t.cache is not None:
                t.metrics.durable_fallback(self._why(addr, reader), len(misses))
            await self._broker_first(addr)
            watch = t.watch
            gen = state.gen
            loaded = await t.guard(
                "durable", "get_keys", lambda: t.durable.get_keys(addr, key_type, misses)
            )
            # No fill while a cache reset is being handled: the durable copy may predate
            # entries the broker outbox is replaying into the new cache.
            resetting = watch is not None and watch.changed
            if (
                loaded
                and owner is not None
                and stamp is not None
                and state.quiet_since(gen)
                and not resetting
            ):
                writes = _upserts(key_type, loaded)
                await self._fill(
                    addr,
                    writes=writes,
                    cache=owner,
                    l1=l1,
                    lease=lease,
                    state=state,
                    gen=gen,
                    stamp=stamp,
                )
            found.update(loaded)
        return found

    async def _broker_first(self, addr: SessionAddr) -> None:
        """Before a durable read: the broker's entries of a lost cache epoch, applied first.

        Only while the cache lost its data and the broker outbox has not replayed it all yet
        (otherwise nothing to do, no round trip): the durable copy may then predate
        acknowledged writes. Raises ``UnavailableError`` rather than read it stale.
        """
        watch, broker = self.t.watch, self.t.broker
        if (
            broker is not None
            and watch is not None
            and (watch.changed or broker.resets_seen != watch.resets)
        ):
            await broker.before_apply(addr)

    def _why(self, addr: SessionAddr, reader: CacheBackend | None) -> str:
        if reader is not None:
            return "miss"
        return "untrusted" if addr in self.t.untrusted else "not_owner"

    async def _cache(self, addr: SessionAddr, op: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """A cache read; ``None`` when the cache is down and the durable tier has everything."""
        try:
            return await self.t.guard("cache", op, fn)
        except UnavailableError as exc:
            reason = "breaker_open" if isinstance(exc, BreakerOpenError) else "cache_error"
            self.t.metrics.durable_fallback(reason)
            if self.t.primary(addr):
                raise  # the durable tier may be behind: never serve it as current
            return None

    async def _fill(
        self,
        addr: SessionAddr,
        *,
        writes: list[KeyWrite],
        cache: CacheBackend,
        l1: MemoryCache | None,
        lease: Lease | None,
        state: SessionState,
        gen: int,
        stamp: int,
    ) -> None:
        t, token = self.t, lease.token if lease else None
        try:
            stored = await t.guard(
                "cache",
                "fill_keys",
                lambda: cache.fill_keys(addr, writes, stamp=stamp, token=token),
            )
        except LeaseLostError:
            t.metrics.cache_fill("failed")
            t.lease_lost(addr, fenced=False)
            return
        except UnavailableError:
            t.metrics.cache_fill("failed")
            return  # a cache that cannot be warmed is only slower
        t.metrics.cache_fill("stored" if stored else "skipped")
        if stored and l1 is not None and state.quiet_since(gen):
            await l1.fill_keys(addr, writes, stamp=0, token=None)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds record: cache, then durable (and fill)."""
        return await self.t.run("load_creds", addr, lambda: self._load_creds(addr))

    async def _load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        watch = self.t.watch
        if watch is None:
            return await self._creds(addr)
        watch.check(addr)
        try:
            record = await self._creds(addr)
        except StoreError:
            await self._lost_first(addr)
            raise
        await watch.verify(addr)
        return record

    async def _creds(self, addr: SessionAddr) -> CredsRecord | None:
        t = self.t
        async with t.states.use(addr) as state:
            lease = await t.lease(addr, write=False)
            owner = t.owner_cache(addr, lease)
            reader = owner or await t.reader(addr)
            stamp = None
            if reader is not None and (t.primary(addr) or state.cached(CREDS[0], [CREDS[1]])):
                hit = await self._cache(addr, "read_creds", lambda: reader.read_creds(addr))
                if hit is not None:
                    if t.watch is not None:
                        t.watch.saw_stamp(addr, hit.stamp)
                    if hit.known:
                        return hit.record
                    stamp = hit.stamp
            await self._broker_first(addr)
            gen = state.gen
            record = await t.guard("durable", "load_creds", lambda: t.durable.load_creds(addr))
            if owner is not None and stamp is not None and state.quiet_since(gen):
                token = lease.token if lease else None
                with contextlib.suppress(UnavailableError, LeaseLostError):  # only slower
                    await t.guard(
                        "cache",
                        "put_creds_guarded",
                        lambda: owner.put_creds_guarded(addr, record, token=token, stamp=stamp),
                    )
            return record

    # -- a damaged cached record: the durable copy -------------------------------------------

    async def _authoritative(self, addr: SessionAddr) -> bool:
        """True when the session has a cache in front and the durable tier is current for it."""
        t = self.t
        if t.cache is None and t.l1 is None:
            return False  # the blob came from the durable tier: nothing else to ask
        return await t.reader(addr) is None  # the rule of the read path (see Tiers.reader)

    async def durable_keys(
        self, addr: SessionAddr, key_type: str, ids: list[str]
    ) -> dict[str, bytes] | None:
        """The durable tier's blobs of ``ids``; ``None`` when it is not authoritative."""
        t = self.t
        async with t.states.use(addr):
            if not await self._authoritative(addr):
                return None
            return await t.guard(
                "durable", "get_keys", lambda: t.durable.get_keys(addr, key_type, ids)
            )

    async def durable_creds(self, addr: SessionAddr) -> tuple[bool, CredsRecord | None]:
        """``(True, record)`` from the durable tier, or ``(False, None)`` when not authoritative."""
        t = self.t
        async with t.states.use(addr):
            if not await self._authoritative(addr):
                return False, None
            return True, await t.guard("durable", "load_creds", lambda: t.durable.load_creds(addr))

    async def evict(self, addr: SessionAddr) -> None:
        """Drop the session's cached records after a damaged one (or distrust the cache)."""
        t = self.t
        async with t.states.use(addr):
            t.forget(addr)
            if t.cache is None or addr in t.untrusted:
                return
            try:
                lease = await t.lease(addr, write=False)
            except StoreError:
                t.distrust(addr)
                return
            await t.evict(addr, lease.token if lease else None)


def _upserts(key_type: str, blobs: dict[str, bytes]) -> list[KeyWrite]:
    return [KeyWrite(key_type, i, b) for i, b in blobs.items()]
