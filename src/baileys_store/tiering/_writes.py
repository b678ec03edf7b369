"""The write paths: write-through (durable first, then caches) and write-behind (cache + outbox).

Write-through: under the session lock, the durable write carries the lease token; then the
cache is brought in line. If that fails the write still stands (it is durable): the session's
cache is distrusted and bypassed until a later write drops its entries. If the durable write
fails it may still have been applied, so the session's cache entries are evicted; with
``durable_outage="buffer"`` and a Redis cache an unavailable durable tier turns the write into
a write-behind one instead (the outbox re-applies it, idempotently).

Write-behind: one Redis script updates the cache and appends the outbox entry; the write is
acknowledged once that returns. While a session has entries pending, all its writes take this
path, so no write ever overtakes an entry still waiting for the durable tier. ``clear`` and
``delete`` first drain the session's outbox, then run write-through.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..contracts import CacheBackend, SharedCache
from ..errors import FencedError, LeaseLostError, UnavailableError
from ._lease import Lease
from ._state import CREDS
from ._tiers import Tiers

T = TypeVar("T")
log = logging.getLogger("baileys_store.tiers")


class Engine(Tiers):
    """:class:`Tiers` plus the write paths."""

    drain: Callable[[SessionAddr], Awaitable[None]] | None = None  # set when there is an outbox

    async def _durable(self, addr: SessionAddr, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A durable write; a fence rejection means this process lost the lease."""
        try:
            return await self.guard("durable", op, fn)
        except FencedError:
            self.metrics.fenced_write()
            if self.leases is not None:
                self.leases.mark_lost(addr)
            self.lost(addr)
            raise

    async def _catch_up(self, addr: SessionAddr) -> None:
        """In write-through, a session buffering since an outage drains its outbox first.

        Without this, a session under steady load would never see its outbox empty (every write
        joins the backlog) and write-through would silently have become write-behind. While the
        durable tier is still down the drain fails fast (the breaker) and the write is buffered.
        """
        if self.write_behind or addr not in self.behind or self.drain is None:
            return
        breaker = getattr(self.guard, "breakers", {}).get("durable")
        if breaker is not None and breaker.state != "closed":
            return  # still failing: buffer without paying a timeout first
        with contextlib.suppress(UnavailableError):
            await self.drain(addr)

    def _may_buffer(self, addr: SessionAddr) -> bool:
        return self.buffer and addr not in self.untrusted

    async def _evict(self, addr: SessionAddr, token: int | None) -> None:
        """After a failed durable write (maybe applied): never serve the old cached values."""
        self.lost(addr)
        if self.cache is None or addr in self.untrusted:
            return
        cache = self.cache
        try:
            await self.guard("cache", "drop", lambda: cache.drop(addr, token=token))
        except Exception:
            self._distrust(addr)

    async def _repair(self, addr: SessionAddr, cache: CacheBackend, token: int | None) -> bool:
        """Drop a distrusted session's cache entries; True when the cache may be used again."""
        if addr not in self.untrusted:
            return True
        try:
            await self._fenced(
                addr, self.guard("cache", "drop", lambda: cache.drop(addr, token=token))
            )
        except UnavailableError:
            return False
        self.untrusted.discard(addr)
        return True

    async def _sync(
        self,
        addr: SessionAddr,
        lease: Lease | None,
        op: str,
        apply: Callable[[CacheBackend], Awaitable[object]],
        l1_apply: Callable[[CacheBackend], Awaitable[object]],
    ) -> None:
        """Bring the caches in line after a durable write; a failure distrusts the session."""
        cache = self.cache
        if cache is None or (cache.shared and self.leases is not None and lease is None):
            return
        token = lease.token if lease else None
        try:
            if await self._repair(addr, cache, token):
                await self._fenced(addr, self.guard("cache", op, lambda: apply(cache)))
            else:
                return
        except LeaseLostError:
            raise  # applied durably, but another process owns the session now: say so
        except BaseException:
            self._distrust(addr)
            # An in-process cache cannot fail for an outage; a write-behind cache is the
            # primary, so a durable change it did not take must not be reported as done.
            if self.shared is None or self.write_behind:
                raise
            log.warning(
                "cache update failed; session bypasses the cache until repaired",
                extra={"event": "cache_distrusted"},
            )
            return
        l1 = self._l1_write(addr, lease)
        if l1 is not None:
            await l1_apply(l1)

    async def write_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """One atomic ``keys.set``."""
        touched = frozenset((w.type, w.id) for w in writes)
        async with self.states.use(addr, write=True, touched=touched):
            lease = await self._lease(addr, write=True)
            await self._catch_up(addr)
            if self._primary(addr):
                await self._behind_keys(addr, lease, writes)
                return
            await self._through_keys(addr, lease, writes, buffer=True)

    async def _through_keys(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite], *, buffer: bool
    ) -> None:
        """Durable first, then the caches (the caller holds the session's write lock)."""
        token = lease.token if lease else None
        try:
            fence = lease.fence() if lease else None
            await self._durable(
                addr, "write_keys", lambda: self.durable.write_keys(addr, writes, fence=fence)
            )
        except UnavailableError:
            if not (buffer and self._may_buffer(addr)):
                await self._evict(addr, token)
                raise
            await self._behind_keys(addr, lease, writes)
            return
        except BaseException:
            await self._evict(addr, token)
            raise
        await self._sync(
            addr,
            lease,
            "update_keys",
            lambda c: c.update_keys(addr, writes, token=token),
            lambda c: c.update_keys(addr, writes, token=None),
        )

    async def rewrite_keys(
        self,
        addr: SessionAddr,
        key_type: str,
        ids: Sequence[str],
        transform: Callable[[str, bytes], bytes | None],
    ) -> int:
        """Re-write stored blobs in place (key rotation); returns how many changed.

        Read and write happen under the session's write lock, after draining its outbox, from
        the durable tier: no write of this process can slip in between, and other processes
        cannot write the session (they would need its lease). ``transform`` returns the new
        blob, or ``None`` to leave one as it is.
        """
        touched = frozenset((key_type, i) for i in ids)
        async with self.states.use(addr, write=True, touched=touched):
            lease = await self._lease(addr, write=True)
            await self._drain_first(addr)
            blobs = await self.guard(
                "durable", "get_keys", lambda: self.durable.get_keys(addr, key_type, ids)
            )
            writes = [
                KeyWrite(key_type, i, new)
                for i, blob in blobs.items()
                if (new := transform(i, blob)) is not None
            ]
            if writes:
                await self._through_keys(addr, lease, writes, buffer=False)
            return len(writes)

    async def rewrite_creds(
        self, addr: SessionAddr, transform: Callable[[bytes], bytes | None]
    ) -> bool:
        """Re-write the stored creds blob in place (key rotation), keeping the version chain."""
        async with self.states.use(addr, write=True, touched=frozenset({CREDS})):
            lease = await self._lease(addr, write=True)
            await self._drain_first(addr)
            record = await self.guard(
                "durable", "load_creds", lambda: self.durable.load_creds(addr)
            )
            new = transform(record.blob) if record is not None else None
            if record is None or new is None:
                return False
            await self._through_creds(addr, lease, new, record.version, buffer=False)
            return True

    async def _behind_tier(self, addr: SessionAddr, token: int | None) -> SharedCache:
        """The shared cache a write-behind write goes to, repaired first if distrusted."""
        shared = self.shared
        assert shared is not None
        if not await self._repair(addr, shared, token):
            raise UnavailableError(f"session {addr}: the cache tier is unavailable")
        return shared

    def appended(self, addr: SessionAddr, seq: int) -> None:
        """An outbox entry ``seq`` was appended: the session is behind until it drains."""
        self.behind[addr] = max(self.behind.get(addr, 0), seq)
        self.on_append()

    async def _behind_keys(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite]
    ) -> None:
        token = lease.token if lease else None
        shared = await self._behind_tier(addr, token)
        fence = lease.fence() if lease else None
        seq, _ = await self._fenced(
            addr,
            self.guard(
                "cache", "wb_keys", lambda: shared.wb_keys(addr, writes, token=token, fence=fence)
            ),
        )
        self.appended(addr, seq)
        l1 = self._l1_write(addr, lease)
        if l1 is not None:
            await l1.update_keys(addr, writes, token=None)

    async def save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        """Compare-and-set the creds; returns the new version."""
        async with self.states.use(addr, write=True, touched=frozenset({CREDS})):
            lease = await self._lease(addr, write=True)
            await self._catch_up(addr)
            if self._primary(addr):
                return await self._behind_creds(addr, lease, blob, expected)
            return await self._through_creds(addr, lease, blob, expected, buffer=True)

    async def _through_creds(
        self,
        addr: SessionAddr,
        lease: Lease | None,
        blob: bytes,
        expected: int | None,
        *,
        buffer: bool,
    ) -> int:
        """Compare-and-set durably, then the caches (the caller holds the write lock)."""
        token = lease.token if lease else None
        try:
            fence = lease.fence() if lease else None
            version = await self._durable(
                addr,
                "save_creds",
                lambda: self.durable.save_creds(addr, blob, expected_version=expected, fence=fence),
            )
        except UnavailableError:
            if not (buffer and self._may_buffer(addr)):
                await self._evict(addr, token)
                raise
            return await self._behind_creds(addr, lease, blob, expected)
        except BaseException:
            await self._evict(addr, token)
            raise
        record = CredsRecord(blob, version)
        await self._sync(
            addr,
            lease,
            "put_creds_guarded",
            lambda c: c.put_creds_guarded(addr, record, token=token),
            lambda c: c.put_creds_guarded(addr, record, token=None),
        )
        return version

    async def _behind_creds(
        self, addr: SessionAddr, lease: Lease | None, blob: bytes, expected: int | None
    ) -> int:
        token = lease.token if lease else None
        shared = await self._behind_tier(addr, token)
        fence = lease.fence() if lease else None
        for _ in range(2):
            done = await self._fenced(
                addr,
                self.guard(
                    "cache",
                    "wb_creds",
                    lambda: shared.wb_creds(addr, blob, expected, token=token, fence=fence),
                ),
            )
            if done is not None:
                version, seq, _ = done
                self.appended(addr, seq)
                l1 = self._l1_write(addr, lease)
                if l1 is not None:
                    await l1.put_creds_guarded(addr, CredsRecord(blob, version), token=None)
                return version
            # The cache does not know the current version: load it from the durable tier.
            await self._learn_version(addr, shared, token)
        raise UnavailableError(f"session {addr}: could not learn the creds version")

    async def _learn_version(
        self, addr: SessionAddr, shared: CacheBackend, token: int | None
    ) -> None:
        stamp = (await self.guard("cache", "read_creds", lambda: shared.read_creds(addr))).stamp
        record = await self.guard("durable", "load_creds", lambda: self.durable.load_creds(addr))
        await self._fenced(
            addr,
            self.guard(
                "cache",
                "put_creds_guarded",
                lambda: shared.put_creds_guarded(addr, record, token=token, stamp=stamp),
            ),
        )

    async def _drain_first(self, addr: SessionAddr) -> None:
        if self._primary(addr) and self.drain is not None:
            await self.drain(addr)

    async def clear_keys(self, addr: SessionAddr) -> None:
        """``keys.clear()``: drain the outbox, clear durably, drop the cached keys."""
        await self._wipe(
            addr, "clear_keys", lambda fence: self.durable.clear_keys(addr, fence=fence)
        )

    async def delete_session(self, addr: SessionAddr) -> bool:
        """Delete creds and keys everywhere; True if anything existed."""
        return await self._wipe(
            addr, "delete_session", lambda fence: self.durable.delete_session(addr, fence=fence)
        )

    async def _wipe(
        self, addr: SessionAddr, name: str, op: Callable[[int | None], Awaitable[T]]
    ) -> T:
        """Drain the session's outbox, run ``op`` durably (with a fence), drop its cache."""
        async with self.states.use(addr, write=True, touched=None):
            lease = await self._lease(addr, write=True)
            token = lease.token if lease else None
            await self._drain_first(addr)
            try:
                fence = lease.fence() if lease else None
                result = await self._durable(addr, name, lambda: op(fence))
            except BaseException:
                await self._evict(addr, token)
                raise
            await self._sync(
                addr,
                lease,
                "drop",
                lambda c: c.drop(addr, token=token, wipe=True),
                lambda c: c.drop(addr, token=None, wipe=True),
            )
            return result
