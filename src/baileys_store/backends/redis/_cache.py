"""The Redis cache of the hybrid store: stamped reads, guarded fills, fenced updates, write-behind.

Per session (all keys carry the session's hash tag, so each script runs on one Cluster node):

- ``m`` hash ``creds``/``v`` (cached creds; ``v`` alone: the session is known to have none),
  ``t`` set of cached key types, ``k:<type>`` hash id -> blob (``""`` = a tombstone: a delete
  not yet drained to the durable tier);
- ``b`` bookkeeping, never expires: ``f`` last lease token issued, ``w`` write stamp (bumped by
  every write, so a fill prepared before a write is skipped), ``os``/``oa`` last outbox sequence
  appended / applied, ``ot`` time of the oldest pending entry, ``at``/``ae`` failed attempts and
  last error of the head entry, ``dl`` dead letters held;
- ``o`` outbox list (msgpack ``[seq, kind, token, time_ms, body, (version)]``), ``oc`` a worker's
  claim on it, ``z`` tombstones to remove once drained, ``d`` dead letters. Each entry also
  carries the durable fence its writer would have used (inside ``body`` for key writes, last
  for creds), so the worker's apply raises the durable fence past any write of that writer
  that lands late.

While outbox entries are pending the cache holds the only copy of their data: every key they
touched is persisted (no TTL) until the worker has drained the session, then expires again.
The same holds while the session has dead letters (``dl`` > 0): the cache keeps serving the
acknowledged values the durable tier did not take (tombstones included), the session's cache
is not dropped, and ``requeue_dead`` can tell which dead records are still current.

A fill carries the write stamp read with the data it fills from, so it is skipped when any write
happened in between, in any process; every write carries the writer's lease token, so a process
that lost its lease cannot overwrite what the new holder wrote.

``<prefix>:epoch`` is a random value set when a store binds the prefix: a Redis that lost its
data (``FLUSHALL``, a restart without persistence) no longer has it, and every write-behind call
reads it in the same round trip, so the loss is noticed (see :mod:`baileys_store.tiering`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import LeaseBackend, SharedCache
from ...results import CachedCreds, CachedKeys, DeadLetterRetry, TierHealth
from . import _scripts as lua
from ._client import ID_CHUNK, ScriptRunner, era_tokens
from ._leases import RedisLeases
from ._outbox import RedisOutbox, entry_body
from ._prefix import CACHE, claim_role
from ._requeue import requeue_dead
from ._scripts import Groups, check_reply, group_args, groups_of, token_arg
from ._url import RedisOptions


class RedisCache(SharedCache, LeaseBackend):
    """Redis cache tier with the guards, the leases and the outbox the hybrid store needs.

    Args:
        options: The parsed ``redis://`` URL (its prefix already ends in ``c``).
        on_retry: Called before each retry of a transient error (the store counts them).

    Attributes:
        outbox: The outbox this cache's write-behind scripts append to.
        epoch: The prefix's epoch as this store last bound it (``None``: not bound yet).
        epoch_changed: True once a write-behind call found another epoch (or none).
    """

    name = "redis"
    tier = "cache"
    shared = True  # other processes see this cache (so only a lease holder may trust it)

    def __init__(
        self, options: RedisOptions, *, on_retry: Callable[[], None] | None = None
    ) -> None:
        self.options = options
        self.runner = ScriptRunner(options, tier="cache", on_retry=on_retry)
        self.outbox = RedisOutbox(self.runner)
        self._leases = RedisLeases(self.runner, resets_cache=True)
        self.epoch: str | None = None
        self.epoch_changed = False
        self.master_changed = False  # epoch_changed set by a new master era (not a lost epoch)
        self._epoch_key = f"{options.prefix}:epoch"
        if self.runner.era is not None:
            self.runner.era.on_change.append(self._master_changed)

    def _master_changed(self, old: str, new: str) -> None:
        """A new master era (failover, restart): without replica acks, like a lost epoch.

        Replication is asynchronous, so write-behind entries this process appended may be
        missing on the new master: :mod:`baileys_store.tiering._reset` marks the sessions with
        entries pending here as lost. With ``replica_acks >= 1`` every acknowledged step was
        on a replica before it was acknowledged, and nothing is marked.
        """
        del old, new
        if self.options.replica_acks == 0:
            self.master_changed = True
            self.epoch_changed = True

    async def open(self) -> None:
        """Connect and check the server answers."""
        await self.runner.open()

    async def close(self) -> None:
        """Close every connection; idempotent."""
        await self.runner.close()

    async def check(self) -> TierHealth:
        """One ``PING`` and the eviction policy (see :meth:`ScriptRunner.check`)."""
        return await self.runner.check()

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        """Blobs, tombstones and the stamp (the first chunk's), one script per 5,000 ids."""
        base = self.runner.base(addr)
        keys = [base + "k:" + key_type, base + "b"]
        found: dict[str, bytes] = {}
        absent: set[str] = set()
        stamp = -1
        for lo in range(0, len(ids), ID_CHUNK):
            part = list(ids[lo : lo + ID_CHUNK])
            reply = await self.runner.eval("read_keys", "read_keys", keys, part)
            self._suspect(addr, reply[2])
            if stamp < 0:
                stamp = int(reply[0])
            for i, v in zip(part, reply[1], strict=True):
                if v is None:
                    continue
                if v == b"":
                    absent.add(i)
                else:
                    found[i] = bytes(v)
        return CachedKeys(found, frozenset(absent), max(stamp, 0))

    def _suspect(self, addr: SessionAddr, flag: Any) -> None:
        """Refuse another era's write-behind data unless replica acks vouch for it.

        The session's cache holds data written before the master changed that the outbox has
        not drained yet (so it is kept: it may be the only copy). Without replica acks the new
        master may lack later writes the old one acknowledged, some of them possibly drained to
        the durable tier already: serving it could go back in time, so the read is refused
        (:class:`UnavailableError`, retried by the caller) until the worker drained the session.
        """
        if int(flag) and self.options.replica_acks == 0:
            raise errors.UnavailableError(
                f"session {addr}: its cached write-behind data predates a change of the Redis "
                "master (failover or restart) and may be older than acknowledged writes; it "
                "is served again once the outbox has drained it"
            )

    def _type_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> tuple[list[str], Groups]:
        base, groups = self.runner.base(addr), groups_of(writes)
        return [base + "b", base + "t", *(base + "k:" + t for t in groups)], groups

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        """Warm the cache with durable values unless a write came first; True when stored.

        One script per 5,000 writes, each checking the stamp: a write in between stops the
        fill (what was stored before it, the write's own cache update overwrites).
        """
        for lo in range(0, len(writes), ID_CHUNK):
            keys, groups = self._type_keys(addr, writes[lo : lo + ID_CHUNK])
            args = [token_arg(token), str(stamp), self.options.ttl * 1000, *group_args(groups)]
            reply = await self.runner.eval("fill_keys", "fill_keys", keys, args)
            if check_reply(addr, reply, token) != lua.OK:
                return False
        return True

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None:
        """Apply a durable write's upserts and deletes to the cache (write-through).

        One script per 5,000 writes (in order, so a later write of an id still wins). Not
        atomic as a whole: a failure part way raises, and the store distrusts the session's
        cache as after any failed update.
        """
        for lo in range(0, len(writes), ID_CHUNK):
            keys, groups = self._type_keys(addr, writes[lo : lo + ID_CHUNK])
            args = [token_arg(token), self.options.ttl * 1000, *group_args(groups)]
            reply = await self.runner.eval("update_keys", "update_keys", keys, args)
            check_reply(addr, reply, token)

    async def read_creds(self, addr: SessionAddr) -> CachedCreds:
        """The cached creds (if the cache knows them) and the stamp."""
        base = self.runner.base(addr)
        stamp, blob, version, suspect = await self.runner.eval(
            "read_creds", "read_creds", [base + "m", base + "b"], []
        )
        self._suspect(addr, suspect)
        if version is None:
            return CachedCreds(None, False, int(stamp))
        record = CredsRecord(bytes(blob), int(version)) if blob is not None else None
        return CachedCreds(record, True, int(stamp))

    async def put_creds_guarded(
        self,
        addr: SessionAddr,
        record: CredsRecord | None,
        *,
        token: int | None,
        stamp: int | None = None,
    ) -> bool:
        """Cache creds (``None``: the session has none). With ``stamp``: a fill, else an update."""
        base = self.runner.base(addr)
        blob, version = (record.blob, record.version) if record else (b"", 0)
        at = "" if stamp is None else str(stamp)
        args = [token_arg(token), at, self.options.ttl * 1000, blob, version]
        reply = await self.runner.eval("put_creds", "put_creds", [base + "m", base + "b"], args)
        return check_reply(addr, reply, token) == lua.OK

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session's cached data (refused while outbox entries are pending).

        Also refused while the session has dead letters (the cache holds their values), unless
        ``wipe``: the session is being cleared or deleted, so its dead letters go too.
        """
        base = self.runner.base(addr)
        keys = [base + "m", base + "t", base + "b", base + "d", base + "z"]
        args = [token_arg(token), base + "k:", "1" if wipe else ""]
        reply = await self.runner.eval("drop", "drop", keys, args)
        check_reply(addr, reply, token)
        if int(reply[1]):  # the dead-letter index is global: only a wipe that found some
            await self.outbox.forget_dead(addr)

    async def appending(
        self, op: str, addr: SessionAddr, script: str, keys: list[str], args: list[Any]
    ) -> list[Any]:
        """A write-behind script's reply, noting the epoch read in the same round trip."""
        reply, found = await self.outbox.appending(
            op, addr, script, keys, args, epoch_key=self._epoch_key
        )
        self._saw_epoch(found)
        return reply

    async def wb_keys(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int]:
        """Cache the writes and append them to the outbox atomically: ``(seq, pending)``."""
        base, groups = self.runner.base(addr), groups_of(writes)
        keys = [base + "b", base + "t", base + "o", base + "z", *(base + "k:" + t for t in groups)]
        body = entry_body(writes, fence)
        args = [token_arg(token), int(time.time() * 1000), body, *group_args(groups)]
        reply = await self.appending("wb_keys", addr, "wb_keys", keys, args)
        check_reply(addr, reply, token)
        return int(reply[1]), int(reply[2])

    async def wb_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        expected: int | None,
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int, int] | None:
        """Compare-and-set creds in the cache + outbox append: ``(version, seq, pending)``.

        ``None`` when the cache does not know the current version (fill it, then retry).
        """
        base = self.runner.base(addr)
        keys = [base + "b", base + "m", base + "o"]
        exp = "" if expected is None else str(expected)
        args = [token_arg(token), int(time.time() * 1000), blob, exp, fence or 0]
        reply = await self.appending("wb_creds", addr, "wb_creds", keys, args)
        code = check_reply(addr, reply, token)
        if code == lua.NO_VERSION:
            return None
        if code == lua.CONFLICT:
            raise errors.ConflictError(
                f"creds of session {addr} are at version {int(reply[1])}, "
                f"caller expected {expected}",
                expected=expected,
                actual=int(reply[1]),
            )
        return int(reply[1]), int(reply[2]), int(reply[3])

    async def requeue_dead(
        self, addr: SessionAddr, *, token: int | None, fence: int | None
    ) -> DeadLetterRetry:
        """Put the session's still-current dead letters back into the outbox (see ``_requeue``)."""
        return await requeue_dead(self, addr, token=token, fence=fence)

    async def bind_durable(self, store_id: str) -> None:
        """Claim this prefix for the durable tier ``store_id`` (first come), or ConfigError.

        A prefix that holds a Redis-only durable store is refused before anything is written
        (a lease takeover would evict that store's creds and keys): see :mod:`._prefix`.
        """
        await claim_role(self.runner, CACHE)
        found = await self.runner.set_once("bind", f"{self.runner.prefix}:durable", store_id)
        if found != store_id:
            raise errors.ConfigError(
                f"redis prefix {self.runner.prefix!r} belongs to another durable tier (database "
                f"id {found}, this one is {store_id}). If that database is gone (deleted or "
                "recreated), drop the cache with `baileys-store cache reset` (it refuses while "
                "write-behind entries are pending); if both databases are in use, give each its "
                "own prefix (?prefix= in the cache URL)"
            )

    async def bind_epoch(self, candidate: str) -> str:
        """Set the prefix's epoch unless one is set; adopt (and return) the one stored."""
        self.epoch = await self.runner.set_once("bind", self._epoch_key, candidate)
        self.epoch_changed = self.master_changed = False
        return self.epoch

    async def current_epoch(self) -> str | None:
        """The prefix's epoch now (``None``: gone); notes a change like a write would."""
        key, client = self._epoch_key, self.runner.client
        return self._saw_epoch(await self.runner.run("outbox", lambda: client.get(key)))

    def _saw_epoch(self, found: Any) -> str | None:
        value = found.decode() if isinstance(found, bytes) else found
        if self.epoch is not None and value != self.epoch:
            self.epoch_changed = True
        return value if value is None else str(value)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease; a new token drops what the session has cached (see ``_leases``).

        The first acquisition in a new master era raises the session's tokens first (see
        ``lua/era_tokens.lua``).
        """
        await era_tokens(self.runner, addr)
        return await self._leases.acquire_lease(addr, owner, ttl_ms, floor=floor)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it with ``token``."""
        return await self._leases.renew_lease(addr, owner, token, ttl_ms)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        return await self._leases.release_lease(addr, owner, token)
