"""The write path: write-through (durable first, then caches) and write-behind (cache + outbox).

Write-through: under the session lock, the durable write carries the lease's fence; then the
cache is brought in line. If that fails the write still stands (it is durable): the session's
cache is distrusted and bypassed until a later write drops its entries. If the durable write
fails it may still have been applied, so the session's cache entries are evicted; with
``durable_outage="buffer"`` and a Redis cache an unavailable durable tier turns the write into
a write-behind one instead (the outbox re-applies it, idempotently).

Write-behind: one Redis script updates the cache and appends the outbox entry; the write is
acknowledged once that returns (with a broker outbox, once the broker stored the entry too:
see ``_broker.py``). While a session has entries pending, all its writes take this
path, so no write ever overtakes an entry still waiting for the durable tier. ``clear`` and
``delete`` first drain the session's outbox, then run write-through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..contracts import CacheBackend, SharedCache
from ..errors import FencedError, StoreError, UnavailableError
from ..observability._tracing import GATE
from ._lease import Lease
from ._state import CREDS, SessionState
from ._tiers import Tiers, closed
from ._worker import OutboxWorker

T = TypeVar("T")


class Writes:
    """The write operations of the engine (see the module doc)."""

    def __init__(self, tiers: Tiers, worker: OutboxWorker | None, *, drain_wait: float) -> None:
        self.t, self.worker, self._drain_wait = tiers, worker, drain_wait

    async def write_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """One atomic ``keys.set``."""
        t = self.t  # the hot path: Tiers.run and SessionStates.use, inline
        if not t.open:
            raise closed()
        start = time.perf_counter()
        result = "ok"
        if t.watch is not None:
            t.watch.check(addr)
        states = t.states
        state = states.by_addr.get(addr)
        if state is None:
            state = states.by_addr[addr] = SessionState()
        state.users += 1
        try:
            if state.lock.locked():
                await states.lock(addr, state)
            else:
                await state.lock.acquire()
            try:
                state.gen += 1
                touched: set[tuple[str, str]] = set()
                for w in writes:
                    touched.add((w.type, w.id))
                state.writing = frozenset(touched)
                if time.monotonic() < GATE.off_until:
                    await self._keys(addr, writes)
                else:
                    with t.span("write_keys", addr):
                        await self._keys(addr, writes)
            finally:
                state.writing = frozenset()
                state.gen += 1
                state.lock.release()
        except StoreError as exc:
            result = t.failed(exc)
            raise
        finally:
            state.users -= 1  # SessionStates.leave and Tiers.observed, inline
            if state.users == 0:
                del states.by_addr[addr]
            held = len(t.leases.held) if t.leases is not None else 0
            metrics = t.metrics
            metrics.observe_op(
                "write_keys", "store", result, time.perf_counter() - start, addr.namespace
            )
            metrics.sessions_in_use(max(len(states.by_addr), held))

    async def _keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        t = self.t
        if t.leases is None and t.shared is None:  # durable (+ in-process cache): no hops
            await self.through_keys(addr, None, writes, buffer=False)
            return
        lease = await t.lease(addr, write=True)
        await self._catch_up(addr)
        if t.primary(addr):
            await self._behind_keys(addr, lease, writes)
        else:
            await self.through_keys(addr, lease, writes, buffer=True)

    async def through_keys(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite], *, buffer: bool
    ) -> None:
        """Durable, then the caches; acknowledged once the durable write is (under the lock).

        Over a shared cache the two run at once (:meth:`_overlapped`).
        """
        t = self.t
        cache = t.cache
        if cache is not None and cache.shared:
            await self._overlapped(addr, lease, writes, buffer=buffer)
            return
        token = lease.token if lease else None
        fence = lease.fence() if lease else None
        try:
            await t.guard(
                "durable", "write_keys", lambda: t.durable.write_keys(addr, writes, fence=fence)
            )
        except BaseException as exc:
            if not await self._failed(addr, exc, token, buffer=buffer):
                raise
            await self._behind_keys(addr, lease, writes)
            return
        if cache is not None and cache.in_process and addr not in t.untrusted:
            try:  # an in-process cache: no guard, no lease (the common case, inline)
                await cache.update_keys(addr, writes, token=None)
            except BaseException:
                t.distrust(addr)
                raise
            return
        await t.sync(
            addr,
            lease,
            "update_keys",
            lambda c, tok: c.update_keys(addr, writes, token=tok),
        )

    async def _overlapped(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite], *, buffer: bool
    ) -> None:
        """Write-through over a shared cache: the durable write and the cache update at once.

        The durable write runs in a task while this one updates the shared cache, so the
        Redis round trip overlaps the durable commit (SQLite's fsync, PostgreSQL's commit)
        instead of following it. The call is acknowledged only when the durable write is
        done, and L1 is updated only then. If the durable write fails, the cache may already
        hold the new value: the session's entries are evicted (as after any failed durable
        write, whose outcome is unknown), so a value never acknowledged is not served again;
        a cache that cannot evict is distrusted (bypassed) instead. The session's write lock
        is held until the durable write has ended, even when the caller is cancelled, so a
        later write never overtakes it.
        """
        t = self.t
        token = lease.token if lease else None
        fence = lease.fence() if lease else None
        durable = asyncio.ensure_future(
            t.guard(
                "durable", "write_keys", lambda: t.durable.write_keys(addr, writes, fence=fence)
            )
        )

        def apply(c: CacheBackend, tok: int | None) -> Awaitable[object]:
            return c.update_keys(addr, writes, token=tok)

        cache_error: BaseException | None = None
        try:
            try:
                await t.sync(addr, lease, "update_keys", apply, l1=False)
            except Exception as exc:  # raised below, once the durable write has ended
                cache_error = exc
            await durable
        except asyncio.CancelledError:
            durable.cancel()
            await asyncio.wait([durable])
            raise
        except BaseException as exc:
            if not await self._failed(addr, exc, token, buffer=buffer):
                raise
            await self._behind_keys(addr, lease, writes)
            return
        if cache_error is not None:
            raise cache_error
        if addr not in t.untrusted:  # a failed cache update distrusted it: L1 stays out too
            await t.sync_l1(addr, lease, apply)

    async def _failed(
        self, addr: SessionAddr, exc: BaseException, token: int | None, *, buffer: bool
    ) -> bool:
        """After a failed durable write: True to buffer it through the outbox instead.

        Otherwise the write may still have been applied, so the session's cache entries are
        evicted (the old values are never served again); a fence rejection also means this
        process lost the lease.
        """
        t = self.t
        if isinstance(exc, UnavailableError) and buffer and t.may_buffer(addr):
            return True
        if isinstance(exc, FencedError):
            t.lease_lost(addr)
        await t.evict(addr, token)
        return False

    async def save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        """Compare-and-set the creds; returns the new version."""
        return await self.t.run("save_creds", addr, lambda: self._save_creds(addr, blob, expected))

    async def _save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        t = self.t
        if t.watch is not None:
            t.watch.check(addr)
        async with t.states.use(addr, write=True, touched=frozenset({CREDS})):
            lease = await t.lease(addr, write=True)
            await self._catch_up(addr)
            if t.primary(addr):
                return await self._behind_creds(addr, lease, blob, expected)
            return await self.through_creds(addr, lease, blob, expected, buffer=True)

    async def through_creds(
        self,
        addr: SessionAddr,
        lease: Lease | None,
        blob: bytes,
        expected: int | None,
        *,
        buffer: bool,
    ) -> int:
        """Compare-and-set durably, then the caches (the caller holds the write lock)."""
        t = self.t
        token = lease.token if lease else None
        fence = lease.fence() if lease else None
        try:
            version = await t.guard(
                "durable",
                "save_creds",
                lambda: t.durable.save_creds(addr, blob, expected_version=expected, fence=fence),
            )
        except BaseException as exc:
            if not await self._failed(addr, exc, token, buffer=buffer):
                raise
            return await self._behind_creds(addr, lease, blob, expected)
        record = CredsRecord(blob, version)
        await t.sync(
            addr,
            lease,
            "put_creds_guarded",
            lambda c, tok: c.put_creds_guarded(addr, record, token=tok),
        )
        return version

    async def clear_keys(self, addr: SessionAddr) -> None:
        """``keys.clear()``: drain the outbox, clear durably, drop the cached keys."""
        t = self.t
        await t.run(
            "clear_keys",
            addr,
            lambda: self._wipe(addr, "clear_keys", lambda f: t.durable.clear_keys(addr, fence=f)),
        )

    async def delete_session(self, addr: SessionAddr) -> bool:
        """Delete creds and keys everywhere; True if anything existed."""
        return await self.t.run("delete_session", addr, lambda: self._delete(addr))

    async def _delete(self, addr: SessionAddr) -> bool:
        t = self.t
        existed = await self._wipe(
            addr, "delete_session", lambda f: t.durable.delete_session(addr, fence=f)
        )
        if t.watch is not None:
            t.watch.acknowledge(addr)  # a deleted session is no longer marked lost
        return existed

    async def _wipe(
        self, addr: SessionAddr, name: str, op: Callable[[int | None], Awaitable[T]]
    ) -> T:
        """Drain the session's outbox, run ``op`` durably (with a fence), drop its cache."""
        t = self.t
        if t.watch is not None and name != "delete_session":
            t.watch.check(addr)
        async with t.states.use(addr, write=True, touched=None):
            lease = await t.lease(addr, write=True)
            token = lease.token if lease else None
            await self.drain_first(addr)
            if t.broker is not None:
                # Drained: nothing in the broker is needed any more, and an entry left there
                # must not be replayed over the wiped session by a later recovery.
                await t.broker.forget(addr)
            fence = lease.fence() if lease else None
            try:
                result = await t.guard("durable", name, lambda: op(fence))
            except BaseException as exc:
                await self._failed(addr, exc, token, buffer=False)
                raise
            await t.sync(
                addr,
                lease,
                "drop",
                lambda c, tok: c.drop(addr, token=tok, wipe=True),
            )
            return result

    # -- write-behind ------------------------------------------------------------------------

    def appended(self, addr: SessionAddr, seq: int) -> None:
        """An outbox entry ``seq`` was appended: the session is behind until it drains."""
        behind = self.t.behind
        behind[addr] = max(behind.get(addr, 0), seq)
        if self.worker is not None:
            self.worker.notify()

    def unsure(self, addr: SessionAddr) -> None:
        """Mark the session behind after a write-behind append whose outcome is unknown.

        A timeout after the script ran, or too few replica acks: its entry may be in the outbox,
        so the session's later writes must not overtake it (until the worker drained it).
        """
        self.t.behind.setdefault(addr, 0)
        if self.worker is not None:
            self.worker.notify()

    async def _behind_tier(self, addr: SessionAddr, token: int | None) -> SharedCache:
        """The shared cache a write-behind write goes to, repaired first if distrusted."""
        shared = self.t.shared
        assert shared is not None
        if not await self.t.repair(addr, shared, token):
            raise UnavailableError(f"session {addr}: the cache tier is unavailable")
        return shared

    async def _behind_keys(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite]
    ) -> None:
        t, had = self.t, addr in self.t.behind
        token = lease.token if lease else None
        shared = await self._behind_tier(addr, token)
        fence = lease.fence() if lease else None
        try:
            seq, _ = await t.fenced(
                addr,
                t.guard(
                    "cache",
                    "wb_keys",
                    lambda: shared.wb_keys(addr, writes, token=token, fence=fence),
                ),
            )
        except UnavailableError:
            self.unsure(addr)
            raise
        self.appended(addr, seq)
        if t.broker is not None:  # acknowledged only once the broker stored it too
            await t.broker.publish_keys(addr, seq, writes, token, fence)
        l1 = t.l1_write(addr, lease)
        if l1 is not None:
            await l1.update_keys(addr, writes, token=None)
        await self._after_append(addr, had)

    async def _behind_creds(
        self, addr: SessionAddr, lease: Lease | None, blob: bytes, expected: int | None
    ) -> int:
        t, had = self.t, addr in self.t.behind
        token = lease.token if lease else None
        shared = await self._behind_tier(addr, token)
        fence = lease.fence() if lease else None
        for _ in range(2):
            try:
                done = await t.fenced(
                    addr,
                    t.guard(
                        "cache",
                        "wb_creds",
                        lambda: shared.wb_creds(addr, blob, expected, token=token, fence=fence),
                    ),
                )
            except UnavailableError:
                self.unsure(addr)
                raise
            if done is not None:
                version, seq, _ = done
                self.appended(addr, seq)
                if t.broker is not None:
                    record = CredsRecord(blob, version)
                    await t.broker.publish_creds(addr, seq, record, token, fence)
                l1 = t.l1_write(addr, lease)
                if l1 is not None:
                    await l1.put_creds_guarded(addr, CredsRecord(blob, version), token=None)
                await self._after_append(addr, had)
                return version
            # The cache does not know the current version: load it from the durable tier.
            await self._learn_version(addr, shared, token)
        raise UnavailableError(f"session {addr}: could not learn the creds version")

    async def _learn_version(
        self, addr: SessionAddr, shared: SharedCache, token: int | None
    ) -> None:
        t = self.t
        cached = await t.guard("cache", "read_creds", lambda: shared.read_creds(addr))
        if t.watch is not None:
            t.watch.saw_stamp(addr, cached.stamp)
        record = await t.guard("durable", "load_creds", lambda: t.durable.load_creds(addr))
        await t.fenced(
            addr,
            t.guard(
                "cache",
                "put_creds_guarded",
                lambda: shared.put_creds_guarded(addr, record, token=token, stamp=cached.stamp),
            ),
        )

    async def _after_append(self, addr: SessionAddr, had: bool) -> None:
        """A reset seen by the append: this entry is kept (re-sequenced), earlier ones lost."""
        watch = self.t.watch
        if watch is None or not watch.changed:
            return
        seq = None if had else self.t.behind.get(addr)
        await watch.reset()
        if seq is not None:  # nothing was pending before this write: nothing of it was lost
            watch.lost.discard(addr)
            self.t.behind[addr] = max(self.t.behind.get(addr, 0), seq)
        watch.check(addr)

    async def drain_first(self, addr: SessionAddr) -> None:
        """Drain the session's outbox when the shared cache holds writes the durable tier lacks."""
        if self.t.primary(addr) and self.worker is not None:
            await self.worker.drain(addr, wait=self._drain_wait)

    async def _catch_up(self, addr: SessionAddr) -> None:
        """In write-through, a session buffering since an outage drains its outbox first.

        Without this, a session under steady load would never see its outbox empty (every write
        joins the backlog) and write-through would silently have become write-behind. While the
        durable tier is still down the drain fails fast (the breaker) and the write is buffered.
        """
        t = self.t
        if t.write_behind or addr not in t.behind or self.worker is None:
            return
        if t.guard.breakers["durable"].state != "closed":
            return  # still failing: buffer without paying a timeout first
        with contextlib.suppress(UnavailableError):
            await self.worker.drain(addr, wait=self._drain_wait)
