"""The Redis side of the transactional outbox: the ready index, claims, acks, dead letters.

Entries are appended by the hybrid cache's write-behind scripts, atomically with the cache update
(see :mod:`._cache`), and drained by :class:`baileys_store.tiering.OutboxWorker`. A session's
outbox is drained by one worker at a time (a claim with an expiry: a dead worker's claim lapses
and another worker redelivers); the durable tier applies each batch at most once (it keeps the
last applied sequence), so a redelivery is harmless.

Global keys (outside any session's hash tag): ``<prefix>:outbox:ready`` sorted set of sessions
that may have entries (score: when first seen), ``<prefix>:outbox:dlq`` sessions with dead letters.

Sequences survive a loss of the cache's data (``FLUSHALL``, a restart without persistence): a
session whose bookkeeping is missing starts its outbox sequence at ``unix milliseconds * 1024``,
above anything the durable tier may have applied (it skips any batch at or below its last
applied sequence, so a restart at 1 would drop new writes silently).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgpack
from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import Outbox
from ...results import Claim, DeadLetter, OutboxEntry
from . import _scripts as lua
from ._acks import ReplicaAcks, acks_of, execute, slot_node, still_owner
from ._client import ScriptRunner, index_member

_PAGE = 200


def entry_body(writes: Sequence[KeyWrite], fence: int | None) -> bytes:
    """An outbox entry's key writes, with the writer's durable fence."""
    body: bytes = msgpack.packb(
        [fence or 0, [[w.type, w.id, w.blob] for w in writes]], use_bin_type=True
    )
    return body


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


class RedisOutbox(Outbox):
    """The outbox of the Redis cache tier (the worker and the CLI drain it through this).

    Args:
        runner: The cache tier's script runner (this object shares its client).
    """

    def __init__(self, runner: ScriptRunner) -> None:
        self._runner = runner
        self._acks = acks_of(runner)
        self.ready_key = f"{runner.prefix}:outbox:ready"
        self._dlq_key = f"{runner.prefix}:outbox:dlq"

    @staticmethod
    def _parse(member: Any) -> SessionAddr:
        raw = member.decode() if isinstance(member, bytes) else str(member)
        ns, sep, sid = raw.partition("\0")
        if not sep:
            raise errors.CorruptDataError("redis: malformed entry in the outbox index")
        return SessionAddr(ns, sid)

    async def appending(
        self,
        op: str,
        addr: SessionAddr,
        script: str,
        keys: list[str],
        args: list[Any],
        *,
        epoch_key: str,
    ) -> tuple[list[Any], Any]:
        """Run a write-behind script with the session's entry in the ready index added first.

        Both go in one pipelined round trip; the index entry comes first, so a crash between
        the two leaves at worst an index entry with nothing to drain, never an undrained outbox.
        The same round trip reads ``epoch_key`` after the script, so the cache sees a data loss
        before the script (the scripts seed a missing sequence themselves: ``seed`` in
        ``lua/_hybrid.lua``). Returns the script's reply and the epoch read.
        """
        if self._acks is not None:
            return await self._appending_acked(
                self._acks, op, addr, script, keys=keys, args=args, epoch_key=epoch_key
            )
        lua_script, client = self._runner.script(script), self._runner.client
        ready, member = self.ready_key, index_member(addr)
        batch = self._runner.batch
        if batch is not None:  # standalone / Sentinel: one block in the iteration's pipeline
            group = (
                ("ZADD", ready, "NX", time.time(), member),
                ("EVALSHA", lua_script.sha, len(keys), *keys, *args),
                ("GET", epoch_key),
            )

            async def grouped() -> tuple[list[Any], Any]:
                replies = await batch.execute(group)
                if isinstance(replies[1], rex.NoScriptError):  # restarted or flushed server
                    await client.script_load(lua_script.script)
                    replies = await batch.execute(group)
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return list(replies[1]), replies[2]

            return await self._runner.run(op, grouped)

        async def once() -> tuple[list[Any], Any]:
            # ``async with``: a pipeline cut short by a timeout or cancel is reset, not leaked.
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(ready, {member: time.time()}, nx=True)
                # EVALSHA queued by hand: a Script object in a pipeline makes redis-py send a
                # SCRIPT EXISTS round trip before every execute.
                pipe.evalsha(lua_script.sha, len(keys), *keys, *args)
                pipe.get(epoch_key)
                _, reply, found = await pipe.execute()
            return list(reply), found

        async def run() -> tuple[list[Any], Any]:
            try:
                return await once()
            except rex.NoScriptError:  # a restarted or flushed server: load it, run again
                await client.script_load(lua_script.script)
                return await once()

        return await self._runner.run(op, run)

    async def _appending_acked(
        self,
        acks: ReplicaAcks,
        op: str,
        addr: SessionAddr,
        script: str,
        *,
        keys: list[str],
        args: list[Any],
        epoch_key: str,
    ) -> tuple[list[Any], Any]:
        """:meth:`appending` with ``WAIT`` last in the same pipeline (see :mod:`._acks`).

        A separate method so the hot path without replica acks stays as it was (no command
        and no branch added inside its round trip).
        """
        runner = self._runner
        lua_script, client = runner.script(script), runner.client
        ready, member = self.ready_key, index_member(addr)

        async def once() -> tuple[list[Any], Any, Any, ClusterNode | None]:
            node = slot_node(runner, keys[0])  # the session's slot: where the script goes
            redo = {
                0: lambda: client.zadd(ready, {member: time.time()}, nx=True),
                2: lambda: client.get(epoch_key),
            }
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(ready, {member: time.time()}, nx=True)
                pipe.evalsha(lua_script.sha, len(keys), *keys, *args)
                pipe.get(epoch_key)
                acks.queue(pipe, node)
                _, reply, found, acked = await execute(runner, op, pipe, script_at=1, redo=redo)
            return list(reply), found, acked, node

        async def run() -> tuple[list[Any], Any, Any, ClusterNode | None]:
            await acks.preload(runner, lua_script)
            try:
                return await once()
            except rex.NoScriptError:
                await client.script_load(lua_script.script)
                return await once()

        reply, found, acked, node = await runner.run(op, run)
        still_owner(runner, op, keys[0], node)
        acks.check(op, acked)
        return reply, found

    async def ready_sessions(self, limit: int = _PAGE) -> list[SessionAddr]:
        """Sessions that may have pending entries, oldest first (``limit <= 0``: all of them)."""
        key, client, stop = self.ready_key, self._runner.client, limit - 1 if limit > 0 else -1
        members: list[Any] = await self._runner.run("outbox", lambda: client.zrange(key, 0, stop))
        return [self._parse(m) for m in members]

    async def ready_summary(self) -> tuple[int, float | None]:
        """Sessions in the ready index and the unix time the oldest was added (the lag's start)."""
        key, client = self.ready_key, self._runner.client

        async def run() -> tuple[int, float | None]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
                count, first = await pipe.execute()
            return int(count), (float(first[0][1]) if first else None)

        return await self._runner.run("outbox", run)

    async def outbox_counters(self, addr: SessionAddr) -> tuple[int, int, float | None]:
        """``(last appended, last applied, oldest pending entry's unix time)`` of a session."""
        key, client = self._runner.base(addr) + "b", self._runner.client
        row: list[Any] = await self._runner.run(
            "outbox", lambda: client.hmget(key, ["os", "oa", "ot"])
        )
        oldest = int(row[2]) / 1000 if row[2] is not None else None
        return int(row[0] or 0), int(row[1] or 0), oldest

    async def unready(self, addr: SessionAddr) -> None:
        """Drop a drained session from the ready index (re-added if an entry raced in)."""
        key, member, client = self.ready_key, index_member(addr), self._runner.client
        await self._runner.run("outbox", lambda: client.zrem(key, member))
        appended, applied, _ = await self.outbox_counters(addr)
        if appended > applied:
            await self._runner.run(
                "outbox", lambda: client.zadd(key, {member: time.time()}, nx=True)
            )

    async def claim(self, addr: SessionAddr, worker: str, claim_ms: int, n: int) -> Claim | None:
        """Claim the session's outbox and read up to ``n`` head entries; None if claimed."""
        base = self._runner.base(addr)
        keys = [base + "oc", base + "o", base + "b"]
        reply = await self._runner.eval("claim", "claim", keys, [worker, claim_ms, n])
        if int(reply[0]) == lua.NOT_CLAIMED:
            return None
        entries = tuple(decode_entry(bytes(e)) for e in reply[1])
        return Claim(entries, int(reply[2]), int(reply[3]), int(reply[4]))

    async def ack(self, addr: SessionAddr, worker: str, n: int, last_seq: int) -> int | None:
        """Remove ``n`` applied head entries; entries left, or None when the claim was lost."""
        base = self._runner.base(addr)
        keys = [base + "oc", base + "o", base + "b", base + "m", base + "t", base + "z"]
        args = [worker, n, last_seq, self._runner.options.ttl * 1000, base + "k:"]
        reply = await self._runner.eval("ack", "ack", keys, args)
        return None if int(reply[0]) == lua.NOT_CLAIMED else int(reply[1])

    async def fail(
        self, addr: SessionAddr, worker: str, error: str, max_attempts: int
    ) -> tuple[bool, int] | None:
        """Count a failed apply of the head entry: ``(dead_lettered, attempts or seq)``."""
        base = self._runner.base(addr)
        keys = [base + "oc", base + "o", base + "b", base + "d"]
        args = [worker, error[:500], max_attempts, int(time.time() * 1000)]
        reply = await self._runner.eval("fail", "fail", keys, args)
        code = int(reply[0])
        if code == lua.NOT_CLAIMED:
            return None
        if code == 2:
            dlq, member, client = self._dlq_key, index_member(addr), self._runner.client
            await self._runner.run("outbox", lambda: client.zadd(dlq, {member: time.time()}))
        return code == 2, int(reply[1])

    async def release(self, addr: SessionAddr, worker: str) -> None:
        """Give up a claim early (compare-and-delete)."""
        await self._runner.eval(
            "outbox", "release_claim", [self._runner.base(addr) + "oc"], [worker]
        )

    async def dead_letters(self, addr: SessionAddr) -> list[DeadLetter]:
        """The session's dead letters, oldest first."""
        key, client = self._runner.base(addr) + "d", self._runner.client
        raw: list[Any] = await self._runner.run("outbox", lambda: client.lrange(key, 0, -1))
        out = []
        for item in raw:
            entry, error, when = msgpack.unpackb(item, raw=True)
            out.append(DeadLetter(decode_entry(entry), error.decode("utf-8", "replace"), int(when)))
        return out

    async def forget_dead(self, addr: SessionAddr) -> None:
        """Take a session out of the dead-letter index (once its list is empty)."""
        key, member, client = self._dlq_key, index_member(addr), self._runner.client
        await self._runner.run("outbox", lambda: client.zrem(key, member))
        if await self._runner.run("outbox", lambda: client.llen(self._runner.base(addr) + "d")):
            await self._runner.run(
                "outbox", lambda: client.zadd(key, {member: time.time()}, nx=True)
            )

    async def dlq_sessions(self) -> AsyncIterator[SessionAddr]:
        """Sessions with dead letters."""
        key, client = self._dlq_key, self._runner.client
        members: list[Any] = await self._runner.run("outbox", lambda: client.zrange(key, 0, -1))
        for m in members:
            yield self._parse(m)
