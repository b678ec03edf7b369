"""A record that failed to decode: read the durable copy, and evict the cached one it replaces.

A cache tier (L1, the in-process cache, Redis) holds copies; one that is damaged or forged must
not fail a read while the durable tier has a good copy. The durable tier is asked only when it
is authoritative for the session: not while the shared cache holds writes it has not got yet
(write-behind, or entries buffered through an outage), where serving it would be a stale read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._model import CredsRecord, SessionAddr
from ..errors import StoreError

if TYPE_CHECKING:
    from ._tiers import Tiers


async def _authoritative(tiers: Tiers, addr: SessionAddr) -> bool:
    """True when the session has a cache in front and the durable tier is current for it."""
    if tiers.cache is None and tiers.l1 is None:
        return False  # the blob came from the durable tier: nothing else to ask
    # The cache a non-owner must read instead of the durable tier, if any (the same rule as
    # the read path); when there is one, the durable copy may be older than the damaged one.
    return await tiers._reader(addr) is None


async def durable_keys(
    tiers: Tiers, addr: SessionAddr, key_type: str, ids: list[str]
) -> dict[str, bytes] | None:
    """The durable tier's blobs of ``ids`` (missing ids absent).

    ``None`` when the durable tier is not authoritative for the session (see the module doc).
    """
    async with tiers.states.use(addr):
        if not await _authoritative(tiers, addr):
            return None
        return await tiers.guard(
            "durable", "get_keys", lambda: tiers.durable.get_keys(addr, key_type, ids)
        )


async def durable_creds(tiers: Tiers, addr: SessionAddr) -> tuple[bool, CredsRecord | None]:
    """``(True, record)`` from the durable tier, or ``(False, None)`` when not authoritative."""
    async with tiers.states.use(addr):
        if not await _authoritative(tiers, addr):
            return False, None
        record = await tiers.guard("durable", "load_creds", lambda: tiers.durable.load_creds(addr))
        return True, record


async def evict(tiers: Tiers, addr: SessionAddr) -> None:
    """Drop the session's cached records (L1 and the cache tier), after a damaged one.

    A cache that cannot drop them is distrusted instead (bypassed until a write repairs it),
    so the damaged copy is never served again either way.
    """
    async with tiers.states.use(addr):
        tiers.lost(addr)
        cache = tiers.cache
        if cache is None or addr in tiers.untrusted:
            return
        try:
            lease = await tiers._lease(addr, write=False)
            token = lease.token if lease else None
            await tiers.guard("cache", "drop", lambda: cache.drop(addr, token=token))
        except StoreError:
            tiers._distrust(addr)
