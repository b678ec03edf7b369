"""The in-process cache (``memory://`` and the hybrid store's L1) behind the cache-tier interface.

An in-process cache needs no stamps or tokens: the session state's write generation already
orders fills against writes inside the process, and no other process can see it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._model import KeyWrite, SessionAddr
from ..backends._cache_types import CachedCreds, CachedKeys
from ..backends.base import CredsRecord, TierHealth
from ..backends.memory import MemoryCache


class MemoryTier:
    """A :class:`MemoryCache` with the methods the store calls on a cache tier."""

    shared = False
    name = "memory"

    def __init__(self, cache: MemoryCache) -> None:
        self.backend = cache

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Empty the cache."""
        await self.backend.close()

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        """Cached blobs (an in-process cache has no tombstones)."""
        return CachedKeys(await self.backend.get_keys(addr, key_type, ids), frozenset(), 0)

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        """Store durable values."""
        await self.backend.put_keys(addr, writes)
        return True

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None:
        """Apply upserts and evictions."""
        await self.backend.put_keys(addr, writes)

    async def read_creds(self, addr: SessionAddr) -> CachedCreds:
        """Cached creds, if any."""
        record = await self.backend.get_creds(addr)
        return CachedCreds(record, record is not None, 0)

    async def put_creds_guarded(
        self,
        addr: SessionAddr,
        record: CredsRecord | None,
        *,
        token: int | None,
        stamp: int | None = None,
    ) -> bool:
        """Cache (or, with ``None``, evict) creds."""
        await self.backend.put_creds(addr, record)
        return True

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session."""
        await self.backend.drop_session(addr)

    def forget(self, addr: SessionAddr) -> None:
        """Evict the session now (synchronously: called from lease-loss callbacks)."""
        self.backend.forget(addr)

    async def check(self) -> TierHealth:
        """Always healthy."""
        return await self.backend.check()
