"""In-process backends: a durable stand-in for tests and a bounded LRU cache.

Neither survives the process. The durable one exists so the contract suite, examples and unit
tests run with no file or server; the cache is the embedded default's hot tier.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from .._model import CredsRecord, KeyWrite, SessionAddr, lease_token_of
from ..contracts import CacheBackend, CachedCreds, CachedKeys, DurableBackend, LeaseBackend
from ..results import SessionInfo, TierHealth
from ._fences import check_fence, check_version

_NONE: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Session:
    keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    creds: CredsRecord | None = None
    fence: int = 0
    seq: int = 0  # last applied outbox sequence
    updated_at: float = 0.0

    def apply(self, writes: Sequence[KeyWrite]) -> None:
        """Upserts and deletes (``blob=None``) in order."""
        for w in writes:
            if w.blob is None:
                self.keys.pop((w.type, w.id), None)
            else:
                self.keys[(w.type, w.id)] = w.blob


@dataclass(slots=True)
class _Lease:
    owner: str = ""
    token: int = 0  # last token issued: kept after expiry, release and session delete
    expires: float = 0.0


class MemoryDurable(DurableBackend, LeaseBackend):
    """Dict-backed durable tier (``memory://``).

    Every method runs without awaiting, so each call is atomic with respect to other tasks.
    """

    cancels_promptly = True  # nothing to wind down: the store's guard need not abandon calls

    name = "memory"

    def __init__(self) -> None:
        self.store_id = secrets.token_hex(8)  # this process's dict: a database of its own
        self._sessions: dict[SessionAddr, _Session] = {}
        self._leases: dict[SessionAddr, _Lease] = {}
        # Fences of sessions that have no row (deleted, or fenced before their first write):
        # a stale lease holder must not resurrect them.
        self._tombstones: dict[SessionAddr, int] = {}
        self._meta: dict[str, str] = {}

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release (data stays until the object is dropped)."""

    def _fence(self, addr: SessionAddr) -> int:
        sess = self._sessions.get(addr)
        return sess.fence if sess is not None else self._tombstones.get(addr, 0)

    def _touch(self, addr: SessionAddr, fence: int | None) -> _Session:
        sess = self._sessions.get(addr)
        new_fence = check_fence(addr, self._fence(addr), fence)
        if sess is None:
            sess = self._sessions[addr] = _Session()
            self._tombstones.pop(addr, None)
        sess.fence = new_fence
        sess.updated_at = time.time()
        return sess

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """Blobs of the ids found."""
        sess = self._sessions.get(addr)
        if sess is None:
            return {}
        return {i: sess.keys[(key_type, i)] for i in ids if (key_type, i) in sess.keys}

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """Apply all writes at once."""
        sess = self._touch(addr, fence)
        sess.apply(writes)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Drop every key of the session."""
        if addr not in self._sessions:
            check_fence(addr, self._fence(addr), fence)
            return 0
        sess = self._touch(addr, fence)
        n = len(sess.keys)
        sess.keys.clear()
        return n

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds record, if any."""
        sess = self._sessions.get(addr)
        return sess.creds if sess else None

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set the creds."""
        sess = self._sessions.get(addr)
        current = sess.creds.version if sess and sess.creds else 0
        check_fence(addr, self._fence(addr), fence)
        version = check_version(addr, current, expected_version)
        sess = self._touch(addr, fence)
        sess.creds = CredsRecord(blob, version)
        return version

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Forget the session."""
        sess = self._sessions.get(addr)
        current = check_fence(addr, self._fence(addr), fence)
        if sess is None:
            if current:
                self._tombstones[addr] = current
            return False
        del self._sessions[addr]
        self._tombstones[addr] = current
        return True

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        new = check_fence(addr, self._fence(addr), token)
        sess = self._sessions.get(addr)
        if sess is not None:
            sess.fence = new
        else:
            self._tombstones[addr] = new

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """Apply an outbox batch unless its sequence was applied already."""
        sess = self._sessions.get(addr)
        if sess is not None and sess.seq >= seq:
            return False
        check_fence(addr, self._fence(addr), fence)
        sess = self._touch(addr, fence)
        sess.apply(writes)
        if creds is not None:
            sess.creds = creds
        sess.seq = seq
        return True

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if free, expired or ``owner``'s: a new, higher token."""
        lease = self._leases.setdefault(addr, _Lease())
        now = time.time()
        if lease.owner and lease.owner != owner and lease.expires > now:
            return None
        lease.token = max(lease.token, floor, lease_token_of(self._fence(addr))) + 1
        lease.owner, lease.expires = owner, now + ttl_ms / 1000
        return lease.token

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it with ``token``."""
        lease = self._leases.get(addr)
        if lease is None or (lease.owner, lease.token) != (owner, token):
            return False
        if lease.expires <= time.time():
            return False
        lease.expires = time.time() + ttl_ms / 1000
        return True

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        lease = self._leases.get(addr)
        if lease is None or (lease.owner, lease.token) != (owner, token):
            return False
        lease.owner, lease.expires = "", 0.0
        return True

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Sessions in (namespace, session_id) order."""
        for addr in sorted(self._sessions, key=lambda a: (a.namespace, a.session_id)):
            if namespace is not None and addr.namespace != namespace:
                continue
            sess = self._sessions.get(addr)
            if sess is not None:
                version = sess.creds.version if sess.creds else 0
                yield SessionInfo(addr.namespace, addr.session_id, version, sess.updated_at)

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order (for export)."""
        sess = self._sessions.get(addr)
        for key in sorted(sess.keys) if sess else ():
            yield key

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys."""
        sess = self._sessions.get(addr)
        counts: dict[str, int] = {}
        for key_type, _ in sess.keys if sess else ():
            counts[key_type] = counts.get(key_type, 0) + 1
        return counts

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` unless it is set (always with ``replace``); returns the stored value."""
        if replace or name not in self._meta:
            self._meta[name] = value
        return self._meta[name]

    async def check(self) -> TierHealth:
        """Always healthy."""
        return TierHealth(self.name, "durable", True, 0.0)


class MemoryCache(CacheBackend):
    """Bounded LRU of blobs (``memory://`` cache).

    Holds encoded blobs, not decoded values, so a caller mutating a returned value can never
    corrupt the cache.
    """

    in_process = True  # cannot hang or go down: the store calls it without a guard
    name = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._lru: OrderedDict[tuple[SessionAddr, str, str], bytes] = OrderedDict()
        self._creds: dict[SessionAddr, CredsRecord] = {}
        # The entries of each session, so forgetting one costs its own size, not the cache's.
        self._by_session: dict[SessionAddr, set[tuple[SessionAddr, str, str]]] = {}

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Empty the cache."""
        self._lru.clear()
        self._creds.clear()
        self._by_session.clear()

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        """Cached blobs of the ids present, refreshing their recency (no tombstones here)."""
        out: dict[str, bytes] = {}
        lru = self._lru
        for i in ids:
            k = (addr, key_type, i)
            blob = lru.get(k)
            if blob is not None:
                lru.move_to_end(k)
                out[i] = blob
        return CachedKeys(out, _NONE, 0)

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        """Store durable values (the engine's write generation already ordered the fill)."""
        self._put(addr, writes)
        return True

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None:
        """Store or evict entries, then trim to the bound."""
        self._put(addr, writes)

    def _put(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        lru, index = self._lru, self._by_session
        for w in writes:
            k = (addr, w.type, w.id)
            if w.blob is None or self._max == 0:
                if lru.pop(k, None) is not None:
                    self._unindex(k)
            else:
                lru[k] = w.blob
                lru.move_to_end(k)
                index.setdefault(addr, set()).add(k)
        while len(lru) > self._max:
            self._unindex(lru.popitem(last=False)[0])

    def _unindex(self, k: tuple[SessionAddr, str, str]) -> None:
        keys = self._by_session.get(k[0])
        if keys is not None:
            keys.discard(k)
            if not keys:
                del self._by_session[k[0]]

    def forget(self, addr: SessionAddr) -> None:
        """Evict the session's entries and creds now (synchronous: lease-loss callbacks)."""
        self._creds.pop(addr, None)
        for k in self._by_session.pop(addr, ()):
            self._lru.pop(k, None)

    async def read_creds(self, addr: SessionAddr) -> CachedCreds:
        """Cached creds, if any."""
        record = self._creds.get(addr)
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
        if record is None:
            self._creds.pop(addr, None)
        else:
            self._creds[addr] = record
        return True

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session's entries and creds."""
        self.forget(addr)

    async def check(self) -> TierHealth:
        """Always healthy."""
        return TierHealth(self.name, "cache", True, 0.0, f"{len(self._lru)} entries")
