"""The Redis side of the transactional outbox: the ready index, claims, acks, dead letters.

Entries are appended by the hybrid cache's write-behind scripts (atomically with the cache
update) and drained by :class:`baileys_store.tiering.OutboxWorker`. A session's outbox is
drained by one worker at a time (a claim with an expiry: a dead worker's claim lapses and another
worker redelivers); the durable tier applies each batch at most once (it keeps the last applied
sequence), so a redelivery is harmless.

Global keys (outside any session's hash tag): ``<prefix>:outbox:ready`` sorted set of sessions
that may have entries (score: when first seen), ``<prefix>:outbox:dlq`` sessions with dead letters.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack

from .. import errors
from .._model import KeyWrite, SessionAddr
from . import _redis_hybrid_scripts as lua
from .base import CredsRecord
from .redis import RedisCache

_PAGE = 200


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
    except (ValueError, TypeError, IndexError, KeyError, AttributeError,
            msgpack.UnpackException) as exc:  # fmt: skip
        raise errors.CorruptDataError(f"redis: malformed outbox entry ({exc})") from None


class RedisOutbox(RedisCache):
    """Outbox operations on the Redis cache tier (used by the outbox worker and the CLI)."""

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

    async def _with_ready(self, op: str, addr: SessionAddr, source: str, keys: list[str],
                          args: list[Any]) -> list[Any]:  # fmt: skip
        """Run a write-behind script with the session's entry in the ready index added first.

        Both go in one pipelined round trip; the index entry comes first, so a crash between
        the two leaves at worst an index entry with nothing to drain, never an undrained outbox.
        """
        script, client = self._script(source), self._c()
        ready, member = self._ready_key(), self._member(addr)

        async def run() -> list[Any]:
            # ``async with``: a pipeline cut short by a timeout or cancel is reset, not leaked.
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(ready, {member: time.time()}, nx=True)
                await script(keys=keys, args=args, client=pipe)
                _, reply = await pipe.execute()
            return list(reply)

        return await self._run(op, run)

    async def ready_sessions(self, limit: int = _PAGE) -> list[SessionAddr]:
        """Sessions that may have pending entries, oldest first."""
        key, client = self._ready_key(), self._c()
        members: list[Any] = await self._run("outbox", lambda: client.zrange(key, 0, limit - 1))
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
