"""Public result types: what listings, health checks, maintenance and the tiers return."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._model import CredsRecord, KeyWrite


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as listed by ``AuthStore.list_sessions`` (and ``DurableBackend``).

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


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Aggregate health of the tiers (``AuthStore.check``).

    ``healthy``: every tier answers, no breaker is open, the outbox keeps up. ``degraded``: the
    store still serves, with less: the cache is down (reads go to the durable tier), or the
    durable tier is down behind a Redis cache that buffers writes, or the outbox lags by more
    than a minute, or Redis lost write-behind entries of sessions not yet acknowledged
    (``data_loss_sessions``; see ``AuthStore.acknowledge_data_loss``). ``unhealthy``: it cannot
    serve (the durable tier is down with nothing to buffer writes; in write-behind, Redis is
    down).

    Attributes:
        status: ``healthy``, ``degraded`` or ``unhealthy``.
        tiers: Each tier's probe.
        breakers: Tier -> breaker state (``closed``, ``open``, ``half_open``).
        outbox_sessions: Sessions with outbox entries possibly pending (``None``: no outbox).
        outbox_lag_seconds: Age of the oldest of them (``None`` when none).
        leases_held: Session leases this process holds.
        data_loss_sessions: Sessions marked lost after Redis lost its data (0: none).
        cache_resets: Times this store noticed Redis had lost its data.
    """

    status: str
    tiers: tuple[TierHealth, ...]
    breakers: dict[str, str] = field(default_factory=dict)
    outbox_sessions: int | None = None
    outbox_lag_seconds: float | None = None
    leases_held: int = 0
    data_loss_sessions: int = 0
    cache_resets: int = 0


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


@dataclass(slots=True)
class RotationReport:
    """What a key rotation did (``AuthStore.rotate_keys``).

    Attributes:
        sessions: Sessions seen.
        rewritten: Records re-encrypted with the active key (with ``verify``: records that
            would be, as they are not under the active key).
        current: Records already under the active key (and authentic).
        in_use: Sessions skipped because another process holds their lease.
        failed: Records that failed to authenticate or decode, left as they are. Anything
            but 0 means the rotation (or the verification) did not succeed.
    """

    sessions: int = 0
    rewritten: int = 0
    current: int = 0
    in_use: int = 0
    failed: int = 0


@dataclass(slots=True)
class PurgeReport:
    """What ``AuthStore.purge`` did: sessions old enough, deleted, and skipped in use."""

    matched: int
    deleted: int = 0
    in_use: int = 0


@dataclass(frozen=True, slots=True)
class CachedKeys:
    """A cache read: live blobs, ids known absent (tombstones), and the write stamp."""

    found: dict[str, bytes]
    absent: frozenset[str]
    stamp: int


@dataclass(frozen=True, slots=True)
class CachedCreds:
    """A cached creds read: ``known`` when the cache knows the version (with or without creds)."""

    record: CredsRecord | None
    known: bool
    stamp: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox entry: key writes (``kind == "k"``) or a creds save (``"c"``)."""

    seq: int
    kind: str
    token: int
    time_ms: int
    writes: tuple[KeyWrite, ...] = ()
    creds: CredsRecord | None = None
    fence: int = 0  # the durable fence the writer would have used (0: none)


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's claim on a session's outbox: the head entries and the session's counters."""

    entries: tuple[OutboxEntry, ...]
    appended: int
    applied: int
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry moved out of the outbox after too many failed applies, with the last error."""

    entry: OutboxEntry
    error: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class SessionCopy:
    """What ``copy_sessions`` did with one session.

    Attributes:
        namespace: The tenant namespace.
        session_id: The session id.
        status: ``copied``; ``replaced`` (copied over a different destination session that
            ``replace`` deleted first); ``identical`` (already the same at the destination:
            skipped);
            ``conflict`` (the destination holds a different complete session: refused, pass
            ``replace``); ``in_use`` (another process holds the destination session's lease:
            skipped); ``changed`` (the source's creds kept changing while it was read: skipped);
            ``failed`` (an error, or the destination did not read back equal: see ``detail``).
            With ``dry_run``: ``would_copy``, ``would_replace`` or ``would_finish`` (the
            destination copy lacks its creds: an interrupted copy) instead of writing.
        keys: Keys of the session at the source (as read for the copy or comparison).
        digest: SHA-256 (hex) of the session's content (see ``copy_sessions``); "" if unread.
        detail: One line on a refusal or failure ("" otherwise).
    """

    namespace: str
    session_id: str
    status: str
    keys: int = 0
    digest: str = ""
    detail: str = ""


@dataclass(slots=True)
class CopyReport:
    """What ``copy_sessions`` did (``baileys-store copy``): counts per outcome.

    ``ok`` is False when any session was refused, skipped or failed: rerun (with ``replace``
    for conflicts) to finish. ``sessions`` lists only those sessions (copied and identical ones
    are counted, not listed), so a large copy's report stays small.

    Attributes:
        seen: Sessions listed at the source.
        copied: Sessions written and verified (with ``dry_run``: that would be written).
        replaced: Of ``copied``, destination sessions deleted first (``replace``).
        identical: Sessions already the same at the destination (skipped).
        conflicts: Different complete sessions at the destination, refused.
        in_use: Sessions whose destination lease another process holds (skipped).
        changed: Sessions whose source creds changed during every read attempt (skipped).
        failed: Sessions that failed (an error, or verification).
        keys: Keys copied (with ``dry_run``: that would be).
        seconds: Wall time of the copy.
        sessions: The sessions not copied or identical, with their status and detail.
    """

    seen: int = 0
    copied: int = 0
    replaced: int = 0
    identical: int = 0
    conflicts: int = 0
    in_use: int = 0
    changed: int = 0
    failed: int = 0
    keys: int = 0
    seconds: float = 0.0
    sessions: list[SessionCopy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every session is at the destination, copied or already identical."""
        return not (self.conflicts or self.in_use or self.changed or self.failed)


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What ``backup`` wrote (``baileys-store backup``).

    Attributes:
        path: The backup file.
        sessions: Sessions written.
        keys: Key records written.
        creds: Creds records written (sessions without creds have none).
        bytes: Size of the file.
        sha256: SHA-256 (hex) of the file up to its footer (the one the footer holds).
        encryption: The source store's encryption mode (``none``, ``aes-256-gcm``...).
        key_ids: Master key ids the records are encrypted with (restoring needs them).
        seconds: Wall time.
    """

    path: str
    sessions: int
    keys: int
    creds: int
    bytes: int
    sha256: str
    encryption: str
    key_ids: tuple[int, ...]
    seconds: float


@dataclass(slots=True)
class RestoreReport:
    """What ``restore`` verified and wrote (``baileys-store restore``).

    The whole file was verified when a report is returned (a damaged file raises instead).
    ``ok`` is False when sessions were refused (``existing`` without ``replace``) or skipped
    (``in_use``); with ``existing`` and no ``replace`` nothing at all is written.

    Attributes:
        path: The backup file.
        format_version: Its format version.
        created_at: When it was written (ISO 8601, UTC).
        encryption: The source store's encryption mode.
        key_ids: Master key ids its records need.
        sessions: Sessions in the file.
        keys: Key records in the file.
        creds: Creds records in the file.
        dry_run: Only verified; nothing written.
        existing: Sessions (``namespace/session``) of the file the destination already holds.
        restored: Sessions written (with ``dry_run``: that would be).
        replaced: Of ``restored``, existing sessions deleted first (``replace``).
        in_use: Sessions skipped because another process holds their lease.
        seconds: Wall time.
    """

    path: str
    format_version: int
    created_at: str
    encryption: str
    key_ids: tuple[int, ...]
    sessions: int
    keys: int
    creds: int
    dry_run: bool = False
    existing: tuple[str, ...] = ()
    restored: int = 0
    replaced: int = 0
    in_use: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every session of the file is (or, with ``dry_run``, would be) restored."""
        return self.restored == self.sessions and not self.in_use


@dataclass(frozen=True, slots=True)
class PrunedSession:
    """What ``prune_prekeys`` did (or, with ``dry_run``, would do) with one session.

    Attributes:
        namespace: The tenant namespace.
        session_id: The session id.
        status: ``pruned`` (pre-keys removed), ``clean`` (nothing below the cutoff),
            ``no_creds`` (no creds stored: skipped), ``no_mark`` (creds without a usable
            ``firstUnuploadedPreKeyId``: skipped), ``in_use`` (another process holds the
            session's lease: skipped).
        upload_mark: The first pre-key id never uploaded (the creds' ``firstUnuploadedPreKeyId``,
            or ``nextPreKeyId`` when lower); ``None`` when skipped before it was read.
        removed: Pre-keys removed (with ``dry_run``: that would be).
        kept: Pre-keys kept (at or above ``upload_mark - keep``, the signed pre-key's id, or
            an id that is not a canonical decimal number).
    """

    namespace: str
    session_id: str
    status: str
    upload_mark: int | None = None
    removed: int = 0
    kept: int = 0


@dataclass(slots=True)
class PruneReport:
    """What ``prune_prekeys`` did (``baileys-store keys prune-prekeys``).

    Attributes:
        keep: The safety margin used: ids at or above ``upload_mark - keep`` stay.
        dry_run: Nothing was written; the counts are what would be removed.
        sessions: The outcome of every session examined, in listing order.
    """

    keep: int
    dry_run: bool = False
    sessions: list[PrunedSession] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for s in self.sessions if s.status == status)

    @property
    def removed(self) -> int:
        """Pre-keys removed over every session (with ``dry_run``: that would be)."""
        return sum(s.removed for s in self.sessions)

    @property
    def kept(self) -> int:
        """Pre-keys kept over every session examined."""
        return sum(s.kept for s in self.sessions)

    @property
    def no_creds(self) -> int:
        """Sessions skipped: no creds."""
        return self._count("no_creds")

    @property
    def no_mark(self) -> int:
        """Sessions skipped: creds without a usable ``firstUnuploadedPreKeyId``."""
        return self._count("no_mark")

    @property
    def in_use(self) -> int:
        """Sessions skipped: leased by another process (run again)."""
        return self._count("in_use")
