"""What the engine needs from a cache tier (in-process or Redis) and from a shared one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._model import KeyWrite, SessionAddr
from ..backends._cache_types import CachedCreds, CachedKeys
from ..backends.base import CredsRecord, DeadLetterRetry, TierHealth


class CacheTier(Protocol):
    """A cache tier. ``shared``: other processes see it (then only a lease holder trusts it).

    ``stamp``/``token`` guard a shared cache: a fill is skipped when the stamp changed since the
    read it came from, and a write with a token older than the newest lease is refused with
    :class:`~baileys_store.errors.LeaseLostError`.
    """

    shared: bool
    name: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> TierHealth: ...

    async def read_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> CachedKeys: ...

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool: ...

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None: ...

    async def read_creds(self, addr: SessionAddr) -> CachedCreds: ...

    async def put_creds_guarded(
        self,
        addr: SessionAddr,
        record: CredsRecord | None,
        *,
        token: int | None,
        stamp: int | None = None,
    ) -> bool: ...

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session; ``wipe``: it is being cleared or deleted (dead letters go too)."""


class SharedCacheTier(CacheTier, Protocol):
    """A Redis cache: also the transactional outbox of write-behind."""

    async def wb_keys(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int]: ...

    async def wb_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        expected: int | None,
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int, int] | None: ...

    async def outbox_counters(self, addr: SessionAddr) -> tuple[int, int, float | None]: ...

    async def bind_durable(self, store_id: str) -> None: ...

    async def requeue_dead(
        self, addr: SessionAddr, *, token: int | None, fence: int | None
    ) -> DeadLetterRetry: ...

    async def ready_summary(self) -> tuple[int, float | None]: ...
