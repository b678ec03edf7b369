"""Which keys a session holds: the one thing the key-store contract (get/set/clear) cannot say.

Export needs every ``(type, id)`` of a session and ``sessions inspect`` wants counts per type.
:class:`~baileys_store.backends.base.DurableBackend` has no such method yet, so a backend opts
in by implementing :class:`KeyListing`; for one that does not, these helpers raise a clear
:class:`~baileys_store.errors.ConfigError` (or return ``None`` for counts) instead of guessing.
The durable tier is asked because it is the source of truth (a cache holds a subset).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .._model import SessionAddr
from .._store import AuthStore
from ..errors import ConfigError


@runtime_checkable
class KeyListing(Protocol):
    """Optional durable-backend methods that enumerate a session's keys (bounded memory)."""

    def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session, in ``(type, id)`` order, read page by page."""

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: number of keys}`` of the session (one aggregate query)."""


def _listing(store: AuthStore) -> KeyListing | None:
    durable = store.durable
    return durable if isinstance(durable, KeyListing) else None


async def key_ids(store: AuthStore, addr: SessionAddr) -> dict[str, list[str]]:
    """``{type: [ids]}`` of every key the session holds.

    Raises:
        ConfigError: the durable backend cannot enumerate keys.
    """
    listing = _listing(store)
    if listing is None:
        raise ConfigError(
            f"the {store.durable.name} backend cannot list a session's keys "
            "(it lacks iter_key_ids), so the session cannot be exported"
        )
    await store.drain_outbox()  # write-behind entries not drained yet belong in the listing
    out: dict[str, list[str]] = {}
    async for key_type, key_id in listing.iter_key_ids(addr):
        out.setdefault(key_type, []).append(key_id)
    return out


async def key_counts(store: AuthStore, addr: SessionAddr) -> dict[str, int] | None:
    """``{type: count}`` for the session, or ``None`` if the backend cannot count keys."""
    listing = _listing(store)
    if listing is None:
        return None
    await store.drain_outbox()
    return await listing.count_keys(addr)
