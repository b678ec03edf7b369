"""The contracts of the tiers, as ``typing.Protocol``s: what a backend implements.

Two tiers, one contract each: :class:`DurableBackend` (the source of truth) and
:class:`CacheBackend` (copies: the in-process cache, L1, Redis). Optional capabilities are
small protocols of their own, checked with ``isinstance`` (:class:`LeaseBackend`: the backend
keeps per-session leases; :class:`SharedCache`: a cache other processes see, which is also
the transactional outbox of write-behind, drained through :class:`Outbox`; an
:class:`OutboxTransport` makes its entries durable elsewhere before a write is acknowledged),
or attributes
declared here with their defaults (``cancels_promptly``, ``store_id``, ``shared``,
``in_process``): a backend subclasses the protocol and inherits the defaults.

Backends store opaque blobs made by the codec: they never see decoded values, so no backend
can leak or misparse them. Every method raises a
:class:`~baileys_store.errors.StoreError` subclass on failure; a missing record is absent
(``None`` or left out of a mapping), never an error, and an error is never "not found".
A new backend: see ``docs/ARCHITECTURE.md`` ("Adding a backend").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from ._model import CredsRecord, KeyWrite, SessionAddr
from .results import (
    CachedCreds,
    CachedKeys,
    Claim,
    DeadLetter,
    DeadLetterRetry,
    OutboxEntry,
    SessionInfo,
    TierHealth,
)

__all__ = [
    "CacheBackend",
    "CachedCreds",
    "CachedKeys",
    "Claim",
    "CredsRecord",
    "DeadLetter",
    "DurableBackend",
    "LeaseBackend",
    "Outbox",
    "OutboxEntry",
    "OutboxTransport",
    "SharedCache",
]


@runtime_checkable
class DurableBackend(Protocol):
    """Source-of-truth storage.

    ``fence``: when given, the write is rejected with :class:`~baileys_store.errors.FencedError`
    if the session has seen a higher token, atomically with the write; otherwise the token is
    recorded. ``None`` means the caller does not use leases.

    Attributes:
        name: Short backend name for metrics and messages (``sqlite``, ``postgres``...).
        cancels_promptly: True when a cancelled call stops at once (no network wait), so the
            store's deadline may cancel it in place instead of abandoning it to a task.
        store_id: A stable id of this durable data set once opened ("" when it has none); a
            Redis cache binds its prefix to it so two stores never share one prefix.
    """

    name: str
    cancels_promptly: bool = False
    store_id: str = ""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def check(self) -> TierHealth:
        """A cheap round trip proving the backend answers."""

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """Blobs of the ids found, in one round trip per bounded chunk."""

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """Apply upserts and deletes (``blob=None``) atomically, all or nothing.

        The last write of a record in ``writes`` wins (see ``_model.last_writes``).
        """

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

        Returns the new version; raises :class:`~baileys_store.errors.ConflictError` on a
        version mismatch.
        """

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete creds, keys and the session row; True if anything existed.

        The session's fence survives the deletion (a fence tombstone), so a stale lease
        holder cannot resurrect a deleted session: its later writes raise ``FencedError``.
        """

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Every session (of one namespace, or all), in (namespace, session_id) order."""

    def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session, in ``(type, id)`` order, read page by page."""

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: number of keys}`` of the session (one aggregate query)."""

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (the barrier a new lease holder writes first).

        Raises ``FencedError`` (with ``current``) when the session has seen a higher token. A
        session that does not exist is left absent (no empty session appears in listings), but
        the token is kept in a fence tombstone, so writes with a lower token are refused.
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
        ``writes``, store ``creds`` with exactly ``creds.version`` (no compare: the cache tier
        already ordered the saves), record ``seq`` as the last applied sequence, and return
        True. The sequence survives ``clear_keys``; ``delete_session`` removes it.
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
        """Take the lease if free, expired or already ``owner``'s; returns a new token.

        Returns ``None`` when another owner holds an unexpired lease.
        """

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease if ``owner`` still holds it with ``token``; False when lost."""

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``; False otherwise."""


@runtime_checkable
class CacheBackend(Protocol):
    """A cache of blobs in front of the durable tier.

    ``stamp``/``token`` guard a shared cache: a fill is skipped when the session's write stamp
    changed since the read it came from, and a write with a token older than the newest lease
    is refused with :class:`~baileys_store.errors.LeaseLostError`. An in-process cache ignores
    both: the engine's write generation orders fills against writes inside the process.

    Attributes:
        name: Short backend name (``memory``, ``redis``).
        shared: Other processes see this cache (then only a lease holder trusts it).
        in_process: The cache lives in this process: it cannot hang or go down, so its calls
            run without breaker or deadline.
    """

    name: str
    shared: bool = False
    in_process: bool = False

    async def open(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Release connections (an in-process cache empties itself); idempotent."""

    async def check(self) -> TierHealth:
        """A cheap round trip proving the cache answers."""

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        """Cached blobs of the ids present, the ids known absent, the session's stamp."""

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        """Store durable values read at ``stamp``; False when skipped (a write came between)."""

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None:
        """Bring the cache in line with a durable write (upserts; ``blob=None`` evicts)."""

    async def read_creds(self, addr: SessionAddr) -> CachedCreds:
        """The cached creds, and whether the cache knows the version."""

    async def put_creds_guarded(
        self,
        addr: SessionAddr,
        record: CredsRecord | None,
        *,
        token: int | None,
        stamp: int | None = None,
    ) -> bool:
        """Cache (``None``: evict) the creds; with ``stamp``, only if no write came between."""

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session; ``wipe``: it is being cleared or deleted (dead letters go too)."""


@runtime_checkable
class Outbox(Protocol):
    """The write-behind outbox as the worker and the CLI drain it: per-session ordered entries.

    A session is *ready* while it has entries not yet applied. A worker claims the head
    entries of one session (others wait until the claim expires), applies them to the durable
    tier, then acks (removes them, records the applied sequence) or fails (counts an attempt;
    after the last one the head entry moves to the session's dead letters).
    """

    async def ready_sessions(self, limit: int = 200) -> list[SessionAddr]:
        """Sessions with entries pending, oldest first (at most ``limit``)."""

    async def ready_summary(self) -> tuple[int, float | None]:
        """``(sessions pending, unix time of the oldest)`` for the lag metric."""

    async def outbox_counters(self, addr: SessionAddr) -> tuple[int, int, float | None]:
        """``(last appended seq, last applied seq, oldest pending time)`` of the session."""

    async def unready(self, addr: SessionAddr) -> None:
        """Take a session with nothing pending off the ready index."""

    async def claim(self, addr: SessionAddr, worker: str, claim_ms: int, n: int) -> Claim | None:
        """Claim up to ``n`` head entries for ``claim_ms``; ``None`` when nothing or claimed."""

    async def ack(self, addr: SessionAddr, worker: str, n: int, last_seq: int) -> int | None:
        """Remove ``n`` applied head entries; entries left, or None when the claim was lost."""

    async def fail(
        self, addr: SessionAddr, worker: str, error: str, max_attempts: int
    ) -> tuple[bool, int] | None:
        """Count a failed apply of the head entry: ``(dead_lettered, attempts or seq)``.

        ``None`` when the claim was lost.
        """

    async def release(self, addr: SessionAddr, worker: str) -> None:
        """Give up a claim without counting an attempt."""

    async def dead_letters(self, addr: SessionAddr) -> list[DeadLetter]:
        """The session's dead letters, oldest first."""

    async def forget_dead(self, addr: SessionAddr) -> None:
        """Delete the session's dead letters."""

    def dlq_sessions(self) -> AsyncIterator[SessionAddr]:
        """Sessions with dead letters."""


@runtime_checkable
class SharedCache(CacheBackend, Protocol):
    """A cache other processes see (Redis): also the transactional outbox of write-behind.

    A write-behind write updates the cache and appends its outbox entry in one atomic step.
    ``epoch`` is the prefix's epoch as this store last bound it; ``epoch_changed`` turns True
    when a call found another (the cache lost its data: see ``tiering/_reset.py``).
    """

    outbox: Outbox
    epoch: str | None
    epoch_changed: bool

    async def wb_keys(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int]:
        """Update the cache and append the entry; returns ``(seq, stamp)``."""

    async def wb_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        expected: int | None,
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int, int] | None:
        """Compare-and-set the cached creds and append; ``(version, seq, stamp)``.

        ``None`` when the cache does not know the current version (load it, then retry).
        """

    async def requeue_dead(
        self, addr: SessionAddr, *, token: int | None, fence: int | None
    ) -> DeadLetterRetry:
        """Put the session's still-current dead records back into the outbox."""

    async def bind_durable(self, store_id: str) -> None:
        """Tie the prefix to one durable data set (``ConfigError`` if another has it)."""

    async def bind_epoch(self, candidate: str) -> str:
        """Set the prefix's epoch unless one is set; adopt (and return) the one stored."""

    async def current_epoch(self) -> str | None:
        """The prefix's epoch now (``None``: gone); notes a change like a write would."""


@runtime_checkable
class OutboxTransport(Protocol):
    """Where a write-behind entry is made durable before the write is acknowledged.

    Two implementations: the Redis outbox itself (``outbox="redis"``, the default: the cache's
    write-behind script appends the entry atomically with the cache update, so there is no
    separate transport object and no extra round trip), and a broker log
    (:class:`baileys_store.backends.nats.NatsTransport`: NATS JetStream). A broker transport
    keeps, per session, the entries in append order under their outbox sequence; an entry
    leaves it only once known applied (:meth:`remove`). How the store combines it with the
    Redis cache (the cache keeps the values and the pending marks; the broker keeps the
    acknowledged entries): see ``tiering/_broker.py``.

    Attributes:
        name: Short name for metrics and messages (``nats``).
    """

    name: str

    async def open(self) -> None:
        """Connect and create or check the streams."""

    async def close(self) -> None:
        """Release the connection; idempotent."""

    async def check(self) -> TierHealth:
        """A cheap round trip proving the transport answers."""

    def describe(self) -> str:
        """Where the entries go (servers, stream), never credentials."""

    async def publish(self, addr: SessionAddr, entry: OutboxEntry, epoch: str) -> int:
        """Store ``entry`` durably (deduplicated by session and ``entry.seq``); its position.

        Returns only once the transport acknowledged it; ``epoch`` is the cache epoch the
        entry was written under (recovery replays entries of an older epoch).
        """

    async def head(self, addr: SessionAddr, after: int = 0) -> tuple[int, OutboxEntry, str] | None:
        """The session's first entry at a position above ``after``: ``(position, entry, epoch)``."""

    async def last(self, addr: SessionAddr) -> tuple[int, OutboxEntry, str] | None:
        """The session's last entry, or ``None``."""

    async def applied_upto(self, addr: SessionAddr, applied: int, limit: int = 512) -> int:
        """The last position of the session's leading entries with a sequence ``<= applied``."""

    async def remove(self, addr: SessionAddr, upto: int) -> None:
        """Remove the session's entries at positions ``<= upto`` (applied)."""

    async def sessions(self) -> dict[SessionAddr, int]:
        """``{session: entries held}`` for every session with entries."""

    async def totals(self) -> tuple[int, int]:
        """``(entries held, dead letters held)``."""

    async def dead_letter(
        self, addr: SessionAddr, entry: OutboxEntry, error: str, epoch: str
    ) -> None:
        """Keep a dead entry (durably) with its last error."""

    async def dead_letters(self, addr: SessionAddr) -> list[DeadLetter]:
        """The session's dead letters, oldest first."""

    async def forget_dead(self, addr: SessionAddr) -> None:
        """Delete the session's dead letters."""

    def dlq_sessions(self) -> AsyncIterator[SessionAddr]:
        """Sessions with dead letters."""
