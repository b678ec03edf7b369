"""Redis backends (redis-py asyncio + hiredis): the Redis-only durable tier and the cache tier.

URL: ``redis[s]://[user:password@]host[:port][/db][?option=value&...]``. Options (anything
else is a :class:`ConfigError`):

- ``cluster=true``: Redis Cluster; ``host:port`` is any node (``db`` must be 0).
- ``max_connections=N`` (32): pool size; callers wait for a free connection, never fail.
- ``socket_timeout=S``, ``socket_connect_timeout=S``: seconds (default: ``op_timeout``).
- ``retries=N`` (3): attempts for transient errors (connection reset, failover); 1 disables.
  redis-py's own client retries are switched off so the two never multiply.
- ``prefix=NAME`` (``bs``): key prefix; the cache tier adds ``c`` (``bsc``), so both tiers may
  share one server.
- ``ttl=S`` (cache only, 86400): entries expire S seconds after their last write. The durable
  tier never sets a TTL.
- ``client_name=NAME``; with ``rediss://``: ``ssl_cert_reqs=required|optional|none``,
  ``ssl_ca_certs=PATH``, ``ssl_certfile=PATH``, ``ssl_keyfile=PATH``, ``ssl_check_hostname=BOOL``.

Layout: every key of a session carries the hash tag ``{namespace|session_id}`` (``|`` appears in
neither, so two sessions never share a tag), so all of a session's operations hit one Cluster slot:
``<prefix>:{ns|sid}:m`` meta hash (``creds``, ``v`` version, ``f`` fence, ``c``/``u`` times),
``...:t`` set of the key types in use, ``...:k:<type>`` hash id → blob. Writes are Lua scripts
(:mod:`._redis_scripts`): fence check and all writes in one atomic step.

Global keys (outside every session's tag): ``<prefix>:schema`` layout version,
``<prefix>:role`` (``durable``: see :mod:`._redis_prefix`), ``<prefix>:meta`` hash of the
store's metadata (``bind_meta``: ``store_id``, encryption mode, ...). A session without a meta
hash (deleted, or fenced before its first write) keeps its fence in ``...:f`` (a tombstone).

Size of a call: a read runs as ``HMGET`` commands of at most 5,000 ids (a read of more is not
one snapshot); a write is one script whatever its size, so it stays all-or-nothing. Redis has no
atomic unit that lets other clients in (``MULTI``/``EXEC`` also runs its commands back to back),
so a 200k-id write holds the server for its run (~150 ms measured), every other client waiting.

``list_sessions`` reads a sorted index ``<prefix>:sessions`` (members ``ns NUL sid``, so lexical
order is (namespace, session_id) order). In a Cluster it lives in another slot than the
sessions, so it cannot change in the same atomic step. Trade-off chosen: a session is created
only after its index entry exists (the script answers "needs index", the client adds the entry
and runs the script again, and adds it once more afterwards), and ``delete_session`` removes the
entry only after the session, then re-adds it if the session came back meanwhile. A listing may
meet dead entries (skipped); it misses a live session only if a create and a delete of the same
session race *and* one of the two processes dies between its script and its index step. Cost: a
session's first write takes four round trips instead of one.

Durability of the Redis-only mode is Redis's: run it with ``appendonly yes`` and
``appendfsync everysec`` (may lose ~1 s on a crash) or ``always``, and with
``maxmemory-policy noeviction`` (an LRU policy would evict durable data: keep the cache on
another server, or use ``volatile-*`` policies there, when both tiers share one). Open logs a
warning, and ``check()`` reports it, when the policy is ``allkeys-*``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..results import SessionInfo
from . import _redis_scripts as lua
from ._redis_base import ID_CHUNK, RedisBase, group_args, groups_of, reply_error
from ._redis_batch import RedisBatchMixin
from ._redis_lease import RedisLeaseMixin
from ._redis_prefix import DURABLE, claim_role
from ._redis_url import RedisOptions

if TYPE_CHECKING:
    from .._config import StoreConfig

T = TypeVar("T")
SCHEMA_VERSION = 1
_PAGE = 500
# KEYS: meta hash. ARGV: name, value, replace ('1') — one script, so concurrent binders agree.
_BIND_META = """
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class RedisDurable(RedisBatchMixin, RedisLeaseMixin, RedisBase):
    """Redis-only durable tier (no TTL anywhere). See the module doc for the layout."""

    tier = "durable"

    def __init__(self, options: RedisOptions) -> None:
        super().__init__(options)
        self.store_id = ""  # known once open (see base.DurableBackend)

    async def open(self) -> None:
        """Connect, claim the prefix, record the schema version (refuse a newer one).

        Raises:
            ConfigError: the prefix holds a hybrid store's cache (see :mod:`._redis_prefix`).
        """
        await super().open()
        try:
            await claim_role(self, DURABLE)
            await self._schema()
            # Who this database is, so a Redis cache in front can refuse a second database.
            self.store_id = await self.bind_meta("store_id", secrets.token_hex(8))
        except BaseException:
            await self.close()
            raise

    async def _schema(self) -> None:
        key, client = f"{self._prefix}:schema", self._c()
        await self._run("open", lambda: client.set(key, SCHEMA_VERSION, nx=True))
        found: Any = await self._run("open", lambda: client.get(key))
        if int(found or 0) > SCHEMA_VERSION:
            raise errors.UnavailableError(
                f"redis data schema {int(found)} is newer than this baileys-store"
            )

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """``HSETNX`` (``HSET`` with ``replace``) on ``<prefix>:meta``, then the stored value."""
        reply: Any = await self._eval(
            "bind_meta", _BIND_META, [f"{self._prefix}:meta"], [name, value, "1" if replace else ""]
        )
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def _member(self, addr: SessionAddr) -> str:
        return f"{addr.namespace}\0{addr.session_id}"

    async def _index(self, addr: SessionAddr, *, add: bool) -> None:
        key, member, client = f"{self._prefix}:sessions", self._member(addr), self._c()
        if add:
            await self._run("index", lambda: client.zadd(key, {member: 0}))
        else:
            await self._run("index", lambda: client.zrem(key, member))

    async def _creating(
        self,
        op: str,
        source: str,
        addr: SessionAddr,
        keys: list[str],
        *,
        fence: int | None,
        args: list[Any],
        expected: int | None = None,
    ) -> list[Any]:
        """Run a script that may create the session; index the session before it exists.

        A large call indexes first: shipping its arguments to a script that only answers
        "needs index" would hold Redis twice (~80 ms of a 200k-id write's ~230 ms).
        """
        head = ["" if fence is None else str(fence), f"{time.time():.6f}"]
        first = len(args) > 2 * ID_CHUNK
        if first:
            await self._index(addr, add=True)
        reply = await self._eval(op, source, keys, [*head, "1" if first else "0", *args])
        if int(reply[0]) == lua.NEEDS_INDEX:
            await self._index(addr, add=True)
            reply = await self._eval(op, source, keys, [*head, "1", *args])
            first = True
        if first and int(reply[0]) == lua.OK:  # again: a delete may have dropped the entry
            await self._index(addr, add=True)
        reply_error(addr, reply, fence, expected)
        return reply

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """One Lua script: fence check, then every upsert and delete."""
        if not writes:  # an empty write (a touch) updates an existing session only
            await self.touch(addr, fence)
            return
        base, groups = self._base(addr), groups_of(writes)
        keys = [base + "m", base + "t", *(base + "k:" + t for t in groups)]
        args = group_args(groups)
        await self._creating("write_keys", lua.WRITE_KEYS, addr, keys, fence=fence, args=args)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Drop every type hash named in the session's type set."""
        base = self._base(addr)
        head = ["" if fence is None else str(fence), f"{time.time():.6f}", base + "k:"]
        reply = await self._eval("clear_keys", lua.CLEAR_KEYS, [base + "m", base + "t"], head)
        reply_error(addr, reply, fence, None)
        return int(reply[1])

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """``HMGET creds v`` on the session's meta hash."""
        return await self._hmget_creds("load_creds", addr)

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set in one Lua script."""
        keys = [self._base(addr) + "m"]
        exp = "" if expected_version is None else str(expected_version)
        reply = await self._creating(
            "save_creds",
            lua.SAVE_CREDS,
            addr,
            keys,
            fence=fence,
            args=[blob, exp],
            expected=expected_version,
        )
        return int(reply[1])

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete the session's keys atomically, then its index entry (re-added if recreated)."""
        base, client = self._base(addr), self._c()
        keys, args = [base + "m", base + "t"], ["" if fence is None else str(fence), base + "k:"]
        reply = await self._eval("delete_session", lua.DELETE_SESSION, keys, args)
        reply_error(addr, reply, fence, None)
        await self._index(addr, add=False)
        if await self._run("delete_session", lambda: client.exists(base + "m")):
            await self._index(addr, add=True)
        return bool(int(reply[1]))

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Pages of the index, each checked against the sessions' meta hashes."""
        key, client = f"{self._prefix}:sessions", self._c()
        lo: bytes = b"-" if namespace is None else b"[" + namespace.encode() + b"\0"
        hi: bytes = b"+" if namespace is None else b"(" + namespace.encode() + b"\1"
        while True:
            members: list[Any] = await self._run(
                "list_sessions",
                lambda lo=lo: client.zrangebylex(key, lo, hi, start=0, num=_PAGE),  # type: ignore[misc]
            )
            if not members:
                return
            addrs = [self._parse_member(m) for m in members]
            rows = await self._run("list_sessions", lambda a=addrs: self._metas(a))  # type: ignore[misc]
            for addr, (version, updated) in zip(addrs, rows, strict=True):
                if updated is not None:  # no meta: a dead index entry
                    yield SessionInfo(
                        addr.namespace, addr.session_id, int(version or 0), float(updated)
                    )
            if len(members) < _PAGE:
                return
            lo = b"(" + members[-1]

    async def _metas(self, addrs: list[SessionAddr]) -> list[Any]:
        async with self._c().pipeline(transaction=False) as pipe:
            for addr in addrs:
                pipe.hmget(self._base(addr) + "m", ["v", "u"])
            rows: list[Any] = await pipe.execute()
        return rows

    @staticmethod
    def _parse_member(member: bytes) -> SessionAddr:
        ns, sep, sid = member.decode("utf-8", "replace").partition("\0")
        if not sep:
            raise errors.CorruptDataError("redis: malformed entry in the session index")
        return SessionAddr(ns, sid)


class RedisCache(RedisBase):
    """Cache tier: same layout under ``<prefix>c:``, every key expiring ``ttl`` after its write."""

    tier = "cache"

    async def put_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """Upserts and evictions of several types, one script per 5,000 writes."""
        for lo in range(0, len(writes), ID_CHUNK):
            base, groups = self._base(addr), groups_of(writes[lo : lo + ID_CHUNK])
            keys = [base + "t", *(base + "k:" + t for t in groups)]
            args = [self.options.ttl * 1000, *group_args(groups)]
            reply = await self._eval("put_keys", lua.CACHE_PUT, keys, args)
            reply_error(addr, reply, None, None)

    async def get_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The cached creds with their version."""
        return await self._hmget_creds("get_creds", addr)

    async def put_creds(self, addr: SessionAddr, record: CredsRecord | None) -> None:
        """Cache (with the TTL) or evict the creds."""
        key = self._base(addr) + "m"
        if record is None:
            client = self._c()
            await self._run("put_creds", lambda: client.unlink(key))
            return
        args = [self.options.ttl * 1000, record.blob, record.version]
        await self._eval("put_creds", lua.CACHE_PUT_CREDS, [key], args)

    async def drop_session(self, addr: SessionAddr) -> None:
        """Evict the creds and every cached key type of the session."""
        base = self._base(addr)
        await self._eval("drop_session", lua.CACHE_DROP, [base + "m", base + "t"], [base + "k:"])


def from_config(config: StoreConfig, role: str) -> RedisDurable | RedisCache:
    """The Redis backend for ``role`` (``durable`` or ``cache``) of ``config``."""
    if role == "durable":
        return RedisDurable(RedisOptions(config.durable, role=role, op_timeout=config.op_timeout))
    if role == "cache" and config.cache is not None:
        return RedisCache(RedisOptions(config.cache, role=role, op_timeout=config.op_timeout))
    raise errors.ConfigError(f"no redis backend for role {role!r}")


__all__ = ["RedisCache", "RedisDurable", "RedisOptions", "from_config"]
