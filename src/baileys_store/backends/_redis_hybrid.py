"""The Redis cache of the hybrid store: stamped reads, guarded fills, fenced updates, the outbox.

See :mod:`._redis_hybrid_scripts` for the layout. A fill carries the write stamp read with the
data it fills from, so it is skipped when any write happened in between, in any process; every
write carries the writer's lease token, so a process that lost its lease cannot overwrite what
the new holder wrote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr, coalesce
from ..contracts import CachedCreds, CachedKeys
from ..results import DeadLetterRetry
from . import _redis_hybrid_scripts as lua
from ._redis_base import ID_CHUNK, group_args, groups_of
from ._redis_lease import RedisLeaseMixin
from ._redis_outbox import RedisOutbox, _token
from ._redis_prefix import CACHE, claim_role
from ._redis_url import RedisOptions

if TYPE_CHECKING:
    from .._config import StoreConfig

_CHUNK = ID_CHUNK  # ids per read, fill or update script: other tenants get in between


class RedisHybridCache(RedisOutbox, RedisLeaseMixin):
    """Redis cache tier with the guards, the leases and the outbox the hybrid store needs."""

    shared = True  # other processes see this cache (so only a lease holder may trust it)
    _lease_resets_cache = True

    @property
    def outbox(self) -> RedisOutbox:
        """The outbox part (this object, until the Redis cache is split by composition)."""
        return self

    def _check(self, addr: SessionAddr, reply: list[Any], token: int | None) -> int:
        code = int(reply[0])
        if code == lua.FENCED:
            current = int(reply[1])
            raise errors.LeaseLostError(
                f"session {addr}: lease token {token} is older than {current}; "
                "another process holds the session now",
                token=token or 0,
                current=current,
            )
        if code == lua.PENDING:
            raise errors.UnavailableError(f"session {addr}: outbox entries are still pending")
        if code == lua.WRONG_TYPE:
            raise errors.CorruptDataError(f"redis: a key of session {addr} holds another type")
        return code

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        """Blobs, tombstones and the stamp (the first chunk's), one script per 5,000 ids."""
        base = self._base(addr)
        keys = [base + "k:" + key_type, base + "b"]
        found: dict[str, bytes] = {}
        absent: set[str] = set()
        stamp = -1
        for lo in range(0, len(ids), _CHUNK):
            part = list(ids[lo : lo + _CHUNK])
            reply = await self._eval("read_keys", lua.READ, keys, part)
            if stamp < 0:
                stamp = int(reply[0])
            for i, v in zip(part, reply[1], strict=True):
                if v is None:
                    continue
                if v == b"":
                    absent.add(i)
                else:
                    found[i] = bytes(v)
        self.saw_stamp(addr, max(stamp, 0))
        return CachedKeys(found, frozenset(absent), max(stamp, 0))

    def _type_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> tuple[list[str], Any]:
        base, groups = self._base(addr), groups_of(writes)
        return [base + "b", base + "t", *(base + "k:" + t for t in groups)], groups

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        """Warm the cache with durable values unless a write came first; True when stored.

        One script per 5,000 writes, each checking the stamp: a write in between stops the
        fill (what was stored before it, the write's own cache update overwrites).
        """
        for lo in range(0, len(writes), _CHUNK):
            keys, groups = self._type_keys(addr, writes[lo : lo + _CHUNK])
            args = [_token(token), str(stamp), self.options.ttl * 1000, *group_args(groups)]
            reply = await self._eval("fill_keys", lua.FILL, keys, args)
            if self._check(addr, reply, token) != lua.OK:
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
        for lo in range(0, len(writes), _CHUNK):
            keys, groups = self._type_keys(addr, writes[lo : lo + _CHUNK])
            args = [_token(token), self.options.ttl * 1000, *group_args(groups)]
            self._check(addr, await self._eval("update_keys", lua.UPDATE, keys, args), token)

    async def read_creds(self, addr: SessionAddr) -> CachedCreds:
        """The cached creds (if the cache knows them) and the stamp."""
        base = self._base(addr)
        stamp, blob, version = await self._eval(
            "read_creds", lua.READ_CREDS, [base + "m", base + "b"], []
        )
        self.saw_stamp(addr, int(stamp))
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
        base = self._base(addr)
        blob, version = (record.blob, record.version) if record else (b"", 0)
        args = [
            _token(token),
            "" if stamp is None else str(stamp),
            self.options.ttl * 1000,
            blob,
            version,
        ]
        reply = await self._eval("put_creds", lua.PUT_CREDS, [base + "m", base + "b"], args)
        return self._check(addr, reply, token) == lua.OK

    async def drop(self, addr: SessionAddr, *, token: int | None, wipe: bool = False) -> None:
        """Evict the session's cached data (refused while outbox entries are pending).

        Also refused while the session has dead letters (the cache holds their values), unless
        ``wipe``: the session is being cleared or deleted, so its dead letters go too.
        """
        base = self._base(addr)
        keys = [base + "m", base + "t", base + "b", base + "d", base + "z"]
        args = [_token(token), base + "k:", "1" if wipe else ""]
        reply = await self._eval("drop", lua.DROP, keys, args)
        self._check(addr, reply, token)
        if int(reply[1]):  # the dead-letter index is global: only a wipe that found some
            await self.forget_dead(addr)

    async def wb_keys(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        *,
        token: int | None,
        fence: int | None = None,
    ) -> tuple[int, int]:
        """Cache the writes and append them to the outbox atomically: ``(seq, pending)``."""
        base, groups = self._base(addr), groups_of(writes)
        keys = [base + "b", base + "t", base + "o", base + "z", *(base + "k:" + t for t in groups)]
        args = [_token(token), int(time.time() * 1000), _body(writes, fence), *group_args(groups)]
        reply = await self._with_ready("wb_keys", addr, lua.WB_KEYS, keys, args)
        self._check(addr, reply, token)
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
        base = self._base(addr)
        keys = [base + "b", base + "m", base + "o"]
        exp = "" if expected is None else str(expected)
        args = [_token(token), int(time.time() * 1000), blob, exp, fence or 0]
        reply = await self._with_ready("wb_creds", addr, lua.WB_CREDS, keys, args)
        code = self._check(addr, reply, token)
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

    async def bind_durable(self, store_id: str) -> None:
        """Claim this prefix for the durable tier ``store_id`` (first come), or ConfigError.

        A prefix that holds a Redis-only durable store is refused before anything is written
        (a lease takeover would evict that store's creds and keys): see :mod:`._redis_prefix`.
        """
        await claim_role(self, CACHE)
        key, client = f"{self._prefix}:durable", self._c()

        async def run() -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, store_id, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        bound = await self._run("bind", run)
        found = bound.decode() if isinstance(bound, bytes) else str(bound)
        if found != store_id:
            raise errors.ConfigError(
                f"redis prefix {self._prefix!r} belongs to another durable tier (database id "
                f"{found}, this one is {store_id}); give each database its own prefix "
                "(?prefix= in the cache URL)"
            )

    async def requeue_dead(
        self, addr: SessionAddr, *, token: int | None, fence: int | None
    ) -> DeadLetterRetry:
        """Put the session's dead letters back into the outbox, keeping only current records.

        A dead record goes back only while the cache still holds exactly its value (the cache
        keeps a session's values, tombstones included, while it has dead letters): then no
        later write replaced it, and applying it after the entries already pending cannot roll
        anything back. The rest are dropped and counted in ``superseded``. The script checks
        again atomically; a change in between (a new dead letter) means reading again.
        """
        base = self._base(addr)
        for _ in range(5):
            letters = await self.dead_letters(addr)
            if not letters:
                await self.forget_dead(addr)
                return DeadLetterRetry(0, 0, 0, 0)
            writes, creds = coalesce(letter.entry for letter in letters)
            by_type, kept_creds = await self._current(addr, writes, creds)
            keep = [w for ws in by_type.values() for w in ws]
            checks: list[Any] = []
            for ws in by_type.values():
                checks += [len(ws), *(x for w in ws for x in (w.id, w.blob or b""))]
            keys = [
                base + "b",
                base + "m",
                base + "o",
                base + "d",
                *(base + "k:" + t for t in by_type),
            ]
            args = [
                _token(token),
                int(time.time() * 1000),
                len(letters),
                _body(keep, fence) if keep else "",
                kept_creds.blob if kept_creds else "",
                str(kept_creds.version) if kept_creds else "",
                fence or 0,
                *checks,
            ]
            appends = bool(keep) or kept_creds is not None
            reply = await (
                self._with_ready("requeue", addr, lua.REQUEUE, keys, args)
                if appends
                else self._eval("requeue", lua.REQUEUE, keys, args)
            )
            if self._check(addr, reply, token) == lua.CONFLICT:
                continue
            await self.forget_dead(addr)
            total = len(writes) + (creds is not None)
            records = len(keep) + (kept_creds is not None)
            return DeadLetterRetry(
                len(letters), records, total - records, int(reply[1]) if appends else 0
            )
        raise errors.UnavailableError(f"session {addr}: dead letters kept changing; try again")

    async def _current(
        self, addr: SessionAddr, writes: list[KeyWrite], creds: CredsRecord | None
    ) -> tuple[dict[str, list[KeyWrite]], CredsRecord | None]:
        """The writes whose value the cache still holds, by type; ``creds`` if it holds them."""
        base, client = self._base(addr), self._c()
        by_type: dict[str, list[KeyWrite]] = {}
        for w in writes:
            by_type.setdefault(w.type, []).append(w)

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for key_type, ws in by_type.items():
                    pipe.hmget(base + "k:" + key_type, [w.id for w in ws])
                pipe.hmget(base + "m", ["creds", "v"])
                return list(await pipe.execute())

        replies = await self._run("outbox", run)
        kept: dict[str, list[KeyWrite]] = {}
        for (key_type, ws), got in zip(by_type.items(), replies, strict=False):
            if same := [w for w, v in zip(ws, got, strict=True) if v == (w.blob or b"")]:
                kept[key_type] = same
        row = replies[-1]
        held = creds is not None and row[0] == creds.blob and row[1] == str(creds.version).encode()
        return kept, creds if held else None


def _body(writes: Sequence[KeyWrite], fence: int | None) -> bytes:
    """An outbox entry's key writes, with the writer's durable fence."""
    body: bytes = msgpack.packb(
        [fence or 0, [[w.type, w.id, w.blob] for w in writes]], use_bin_type=True
    )
    return body


def from_config(config: StoreConfig, role: str) -> RedisHybridCache:
    """The hybrid Redis cache of ``config`` (``role`` must be ``cache``)."""
    if role != "cache" or config.cache is None:
        raise errors.ConfigError(f"no redis hybrid backend for role {role!r}")
    return RedisHybridCache(RedisOptions(config.cache, role=role, op_timeout=config.op_timeout))
