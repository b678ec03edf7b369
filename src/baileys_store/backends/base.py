"""The contracts every backend implements, and the checks they share.

A *durable* backend is the source of truth; a *cache* backend holds copies. Both store opaque
blobs made by the codec: they never see decoded values, so no backend can leak or misparse them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._model import KeyWrite, SessionAddr
from ..errors import ConflictError, FencedError


@dataclass(frozen=True, slots=True)
class CredsRecord:
    """The stored creds of one session: an encoded blob and its version (1, 2, ...)."""

    blob: bytes
    version: int


@dataclass(frozen=True, slots=True)
class DeadLetterRetry:
    """What retrying a session's dead letters did (see ``AuthStore.retry_dead_letters``).

    Attributes:
        letters: Dead letters taken off the session's list.
        records: Records put back into the outbox (the cache showed them still current).
        superseded: Records left out: a later write replaced them (or the cache no longer
            holds them, so they cannot be shown current); re-applying them could roll a
            newer value back.
        seq: Last outbox sequence appended (0: nothing appended).
    """

    letters: int
    records: int
    superseded: int
    seq: int


class _Entry(Protocol):
    @property
    def writes(self) -> Sequence[KeyWrite]: ...
    @property
    def creds(self) -> CredsRecord | None: ...


def coalesce(entries: Iterable[_Entry]) -> tuple[list[KeyWrite], CredsRecord | None]:
    """The net effect of consecutive outbox entries: last write per record, last creds."""
    last: dict[tuple[str, str], bytes | None] = {}
    creds: CredsRecord | None = None
    for entry in entries:
        if entry.creds is not None:
            creds = entry.creds
        for w in entry.writes:
            last[(w.type, w.id)] = w.blob
    return [KeyWrite(t, i, b) for (t, i), b in last.items()], creds


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as listed by :meth:`DurableBackend.list_sessions`.

    Attributes:
        namespace: The tenant namespace.
        session_id: The session id.
        creds_version: Version of the stored creds; 0 when no creds were saved yet.
        updated_at: Unix time (seconds) of the last write to the session.
    """

    namespace: str
    session_id: str
    creds_version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class TierHealth:
    """Result of a backend's ``check()``: ``ok`` plus a short, secret-free detail."""

    backend: str
    tier: str
    ok: bool
    latency_ms: float
    detail: str = ""


@runtime_checkable
class DurableBackend(Protocol):
    """Source-of-truth storage. Every method raises a :class:`StoreError` subclass on failure.

    ``fence``: when given, the write is rejected with :class:`FencedError` if the session has
    seen a higher token, atomically with the write; otherwise the token is recorded. ``None``
    means the caller does not use leases.
    """

    name: str

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """Blobs of the ids found, in one round trip per bounded chunk."""

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """Apply upserts and deletes (``blob=None``) atomically, all or nothing."""

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Delete every key of the session (not its creds); returns how many were deleted."""

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds record, or ``None`` when the session has none."""

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Store creds if the current version equals ``expected_version`` (``None``: any).

        Returns the new version; raises :class:`ConflictError` on a version mismatch.
        """

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete creds, keys and the session row; True if anything existed.

        The session's fence survives the deletion (a fence tombstone), so a stale lease
        holder cannot resurrect a deleted session: its later writes raise
        :class:`FencedError` and nothing is applied.
        """

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Every session (of one namespace, or all), in (namespace, session_id) order."""

    async def check(self) -> TierHealth:
        """A cheap round trip proving the backend answers."""

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (the barrier a new lease holder writes first).

        Raises :class:`FencedError` (with ``current``) when the session has seen a higher
        token. A session that does not exist is left absent (no empty session appears in
        listings), but the token is kept in a fence tombstone, so writes with a lower token
        are refused as for an existing session.
        """

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Store ``value`` under ``name`` in the store's metadata unless a value is there.

        Returns the value stored (the existing one when ``replace`` is False and ``name`` was
        already set; ``value`` otherwise). Atomic: two processes binding the same name at once
        both get the one value that won. Used for the encryption mode and key fingerprints.
        """

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """Apply one drained outbox batch atomically, at most once.

        If the session's last applied outbox sequence is ``>= seq`` nothing happens and the
        result is False (a redelivery). Otherwise, in one atomic step: check the fence, apply
        ``writes`` (upserts and ``blob=None`` deletes), store ``creds`` with exactly
        ``creds.version`` (no compare: the cache tier already ordered the saves), record
        ``seq`` as the last applied sequence, and return True. The sequence survives
        ``clear_keys``; ``delete_session`` removes it with the session.
        """


@runtime_checkable
class LeaseBackend(Protocol):
    """Per-session leases with fencing tokens (Redis, and the durable tiers without Redis).

    A token is strictly greater than every token issued before for the session, and than the
    session's fence recorded by the durable writes (``floor``), so a write carrying it is
    accepted and every older holder's write is fenced. Times are the server's clock where the
    server has one. ``owner`` is a random id per process (never a secret).
    """

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if it is free, expired or already ``owner``'s; returns a new token.

        Returns ``None`` when another owner holds an unexpired lease.
        """

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease if ``owner`` still holds it with ``token``; False when lost."""

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``; False otherwise."""


@runtime_checkable
class CacheBackend(Protocol):
    """A cache of blobs. Missing entries are absent; errors raise, like the durable tier."""

    name: str

    async def open(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """Cached blobs of the ids present."""

    async def put_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """Store or (``blob=None``) evict entries."""

    async def get_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The cached creds record, if any."""

    async def put_creds(self, addr: SessionAddr, record: CredsRecord | None) -> None:
        """Cache (or evict, with ``None``) the creds record."""

    async def drop_session(self, addr: SessionAddr) -> None:
        """Evict everything cached for the session."""

    async def check(self) -> TierHealth:
        """A cheap round trip proving the cache answers."""


FENCE_SHIFT = 32  # a durable fence is (lease token << 32) | write counter


def lease_token_of(fence: int) -> int:
    """The lease token part of a durable fence value."""
    return fence >> FENCE_SHIFT


def check_fence(addr: SessionAddr, current: int, token: int | None) -> int:
    """Return the fence to record, or raise :class:`FencedError` when ``token`` is stale."""
    if token is None:
        return current
    if token < current:
        raise FencedError(
            f"write to session {addr} fenced: token {token} < current {current}",
            token=token,
            current=current,
        )
    return token


def check_version(addr: SessionAddr, current: int, expected: int | None) -> int:
    """Return the next creds version, or raise :class:`ConflictError` on a stale expectation."""
    if expected is not None and expected != current:
        raise ConflictError(
            f"creds of session {addr} are at version {current}, caller expected {expected}",
            expected=expected,
            actual=current,
        )
    return current + 1
