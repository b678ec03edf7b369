"""The Redis side of the transactional outbox: the ready index, claims, acks, dead letters.

Entries are appended by the hybrid cache's write-behind scripts (atomically with the cache
update) and drained by :class:`baileys_store.tiering.OutboxWorker`. A session's outbox is
drained by one worker at a time (a claim with an expiry: a dead worker's claim lapses and another
worker redelivers); the durable tier applies each batch at most once (it keeps the last applied
sequence), so a redelivery is harmless.

Global keys (outside any session's hash tag): ``<prefix>:outbox:ready`` sorted set of sessions
that may have entries (score: when first seen), ``<prefix>:outbox:dlq`` sessions with dead letters,
``<prefix>:epoch`` a random value set when a store binds the prefix: a Redis that lost its data
(``FLUSHALL``, a restart without persistence) no longer has it, and every write-behind call reads
it in the same round trip, so the loss is noticed (see :mod:`baileys_store.tiering._reset`).

Sequences survive such a loss: a session whose bookkeeping is missing starts its outbox sequence
at ``unix milliseconds * 1024``, above anything the durable tier may have applied (it skips any
batch at or below its last applied sequence, so a restart at 1 would drop new writes silently).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

import msgpack

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..contracts import Claim, DeadLetter, OutboxEntry
from . import _redis_hybrid_scripts as lua
from .redis import RedisCache

_PAGE = 200


# KEYS: b. ARGV: floor. A session without bookkeeping starts its sequences at the floor.
def _token(token: int | None) -> str:
    return "" if token is None else str(token)


def decode_entry(raw: bytes) -> OutboxEntry:
    """Decode a stored entry (:class:`CorruptDataError` when malformed)."""
    try:
        # Redis's cmsgpack writes every Lua string as a msgpack str: read them as raw bytes.
        item = msgpack.unpackb(raw, raw=True)
        seq, kind, token, when = int(item[0]), item[1].decode(), int(item[2]), int(item[3])
        if kind == "c":
            creds = CredsRecord(bytes(item[4]), int(item[5]))
            return OutboxEntry(seq, kind, token, when, creds=creds, fence=int(item[6]))
        fence, body = msgpack.unpackb(item[4], raw=False)
        writes = tuple(KeyWrite(t, i, b) for t, i, b in body)
        return OutboxEntry(seq, kind, token, when, writes=writes, fence=int(fence))
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        msgpack.UnpackException,
    ) as exc:
        raise errors.CorruptDataError(f"redis: malformed outbox entry ({exc})") from None


class RedisOutbox(RedisCache):
    """Outbox operations on the Redis cache tier (used by the outbox worker and the CLI).

    ``epoch``: the prefix's epoch as this store last bound it (``None``: not bound yet);
    ``epoch_changed`` turns True when a write-behind call found another (or none), or a read
    found the bookkeeping of a session with entries pending here gone.
    """

    epoch: str | None = None
    epoch_changed = False
    pending: Mapping[SessionAddr, int] = MappingProxyType({})  # the engine's ``behind``

    def _epoch_key(self) -> str:
        return f"{self._prefix}:epoch"

    def _saw_epoch(self, found: Any) -> str | None:
        value = found.decode() if isinstance(found, bytes) else found
        if self.epoch is not None and value != self.epoch:
            self.epoch_changed = True
        return value if value is None else str(value)

    async def bind_epoch(self, candidate: str) -> str:
        """Set the prefix's epoch unless one is set; adopt (and return) the one stored."""
        key, client = self._epoch_key(), self._c()

        async def run() -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, candidate, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        found = await self._run("bind", run)
        self.epoch = found.decode() if isinstance(found, bytes) else str(found)
        self.epoch_changed = False
        return self.epoch

    async def current_epoch(self) -> str | None:
        """The prefix's epoch now (``None``: gone); notes a change like a write would."""
        key, client = self._epoch_key(), self._c()
        return self._saw_epoch(await self._run("outbox", lambda: client.get(key)))

    def saw_stamp(self, addr: SessionAddr, stamp: int) -> None:
        """A read's write stamp: 0 for a session with entries pending here means a data loss.

        Every write-behind append bumps the stamp (never reset but by a loss), so a session in
        ``pending`` (``Engine.behind``: entries this process appended, not yet drained) that
        reads stamp 0 has lost its bookkeeping, and with it the entries.
        """
        if stamp == 0 and addr in self.pending:
            self.epoch_changed = True

    def _ready_key(self) -> str:
        return f"{self._prefix}:outbox:ready"

    def _dlq_key(self) -> str:
        return f"{self._prefix}:outbox:dlq"

    def _member(self, addr: SessionAddr) -> str:
        return f"{addr.namespace}\0{addr.session_id}"

    @staticmethod
    def _parse(member: Any) -> SessionAddr:
        raw = member.decode() if isinstance(member, bytes) else str(member)
        ns, sep, sid = raw.partition("\0")
        if not sep:
            raise errors.CorruptDataError("redis: malformed entry in the outbox index")
        return SessionAddr(ns, sid)

    async def _with_ready(
        self, op: str, addr: SessionAddr, source: str, keys: list[str], args: list[Any]
    ) -> list[Any]:
        """Run a write-behind script with the session's entry in the ready index added first.

        Both go in one pipelined round trip; the index entry comes first, so a crash between
        the two leaves at worst an index entry with nothing to drain, never an undrained outbox.
        The same round trip reads the epoch after the script, so a data loss before the script
        is seen (the scripts seed a missing sequence themselves: see ``seed`` in the scripts).
        """
        script, client = self._script(source), self._c()
        ready, member, epoch = self._ready_key(), self._member(addr), self._epoch_key()

        async def run() -> list[Any]:
            # ``async with``: a pipeline cut short by a timeout or cancel is reset, not leaked.
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(ready, {member: time.time()}, nx=True)
                await script(keys=keys, args=args, client=pipe)
                pipe.get(epoch)
                _, reply, found = await pipe.execute()
            self._saw_epoch(found)
            return list(reply)

        return await self._run(op, run)

    async def ready_sessions(self, limit: int = _PAGE) -> list[SessionAddr]:
        """Sessions that may have pending entries, oldest first (``limit <= 0``: all of them)."""
        key, client, stop = self._ready_key(), self._c(), limit - 1 if limit > 0 else -1
        members: list[Any] = await self._run("outbox", lambda: client.zrange(key, 0, stop))
        return [self._parse(m) for m in members]

    async def ready_summary(self) -> tuple[int, float | None]:
        """Sessions in the ready index and the unix time the oldest was added (the lag's start)."""
        key, client = self._ready_key(), self._c()

        async def run() -> tuple[int, float | None]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
                count, first = await pipe.execute()
            return int(count), (float(first[0][1]) if first else None)

        return await self._run("outbox", run)

    async def outbox_counters(self, addr: SessionAddr) -> tuple[int, int, float | None]:
        """``(last appended, last applied, oldest pending entry's unix time)`` of a session."""
        key, client = self._base(addr) + "b", self._c()
        row: list[Any] = await self._run("outbox", lambda: client.hmget(key, ["os", "oa", "ot"]))
        oldest = int(row[2]) / 1000 if row[2] is not None else None
        return int(row[0] or 0), int(row[1] or 0), oldest

    async def unready(self, addr: SessionAddr) -> None:
        """Drop a drained session from the ready index (re-added if an entry raced in)."""
        key, member, client = self._ready_key(), self._member(addr), self._c()
        await self._run("outbox", lambda: client.zrem(key, member))
        appended, applied, _ = await self.outbox_counters(addr)
        if appended > applied:
            await self._run("outbox", lambda: client.zadd(key, {member: time.time()}, nx=True))

    async def claim(self, addr: SessionAddr, worker: str, claim_ms: int, n: int) -> Claim | None:
        """Claim the session's outbox and read up to ``n`` head entries; None if claimed."""
        base = self._base(addr)
        keys = [base + "oc", base + "o", base + "b"]
        reply = await self._eval("claim", lua.CLAIM, keys, [worker, claim_ms, n])
        if int(reply[0]) == lua.NOT_CLAIMED:
            return None
        entries = tuple(decode_entry(bytes(e)) for e in reply[1])
        return Claim(entries, int(reply[2]), int(reply[3]), int(reply[4]))

    async def ack(self, addr: SessionAddr, worker: str, n: int, last_seq: int) -> int | None:
        """Remove ``n`` applied head entries; entries left, or None when the claim was lost."""
        base = self._base(addr)
        keys = [base + "oc", base + "o", base + "b", base + "m", base + "t", base + "z"]
        args = [worker, n, last_seq, self.options.ttl * 1000, base + "k:"]
        reply = await self._eval("ack", lua.ACK, keys, args)
        return None if int(reply[0]) == lua.NOT_CLAIMED else int(reply[1])

    async def fail(
        self, addr: SessionAddr, worker: str, error: str, max_attempts: int
    ) -> tuple[bool, int] | None:
        """Count a failed apply of the head entry: ``(dead_lettered, attempts or seq)``."""
        base = self._base(addr)
        keys = [base + "oc", base + "o", base + "b", base + "d"]
        args = [worker, error[:500], max_attempts, int(time.time() * 1000)]
        reply = await self._eval("fail", lua.FAIL, keys, args)
        code = int(reply[0])
        if code == lua.NOT_CLAIMED:
            return None
        if code == 2:
            dlq, member, client = self._dlq_key(), self._member(addr), self._c()
            await self._run("outbox", lambda: client.zadd(dlq, {member: time.time()}))
        return code == 2, int(reply[1])

    async def release(self, addr: SessionAddr, worker: str) -> None:
        """Give up a claim early (compare-and-delete)."""
        key, client = self._base(addr) + "oc", self._c()
        source = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
        await self._run("outbox", lambda: client.eval(source, 1, key, worker))

    async def dead_letters(self, addr: SessionAddr) -> list[DeadLetter]:
        """The session's dead letters, oldest first."""
        key, client = self._base(addr) + "d", self._c()
        raw: list[Any] = await self._run("outbox", lambda: client.lrange(key, 0, -1))
        out = []
        for item in raw:
            entry, error, when = msgpack.unpackb(item, raw=True)
            out.append(DeadLetter(decode_entry(entry), error.decode("utf-8", "replace"), int(when)))
        return out

    async def forget_dead(self, addr: SessionAddr) -> None:
        """Take a session out of the dead-letter index (once its list is empty)."""
        key, member, client = self._dlq_key(), self._member(addr), self._c()
        await self._run("outbox", lambda: client.zrem(key, member))
        if await self._run("outbox", lambda: client.llen(self._base(addr) + "d")):
            await self._run("outbox", lambda: client.zadd(key, {member: time.time()}, nx=True))

    async def dlq_sessions(self) -> AsyncIterator[SessionAddr]:
        """Sessions with dead letters."""
        key, client = self._dlq_key(), self._c()
        members: list[Any] = await self._run("outbox", lambda: client.zrange(key, 0, -1))
        for m in members:
            yield self._parse(m)
