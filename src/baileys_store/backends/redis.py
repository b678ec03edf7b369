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
another server, or use ``volatile-*`` policies there, when both tiers share one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis import exceptions as rex
from redis.asyncio import Redis, RedisCluster
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .. import errors
from .._model import KeyWrite, SessionAddr
from . import _redis_scripts as lua
from ._redis_batch import RedisBatchMixin
from ._redis_lease import RedisLeaseMixin
from ._redis_url import RedisOptions
from .base import CredsRecord, SessionInfo, TierHealth, check_fence, check_version

if TYPE_CHECKING:
    from .._config import StoreConfig

T = TypeVar("T")
SCHEMA_VERSION = 1
_PAGE = 500
def _transient(exc: BaseException) -> bool:
    """Errors worth one more try: lost connections, timeouts, failover in progress."""
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)):
        return False
    transient = (rex.ConnectionError, rex.TimeoutError, rex.TryAgainError, rex.ClusterDownError,
                 rex.ReadOnlyError)  # fmt: skip
    return isinstance(exc, transient)


def _groups(writes: Sequence[KeyWrite]) -> dict[str, tuple[list[bytes | str], list[str]]]:
    """Per type: flat upsert pairs and delete ids, the last write of an id winning."""
    last = {(w.type, w.id): w.blob for w in writes}
    out: dict[str, tuple[list[bytes | str], list[str]]] = {}
    for (key_type, key_id), blob in last.items():
        ups, dels = out.setdefault(key_type, ([], []))
        if blob is None:
            dels.append(key_id)
        else:
            ups += (key_id, blob)
    return out


def _group_args(groups: dict[str, tuple[list[bytes | str], list[str]]]) -> list[bytes | str | int]:
    args: list[bytes | str | int] = []
    for key_type, (ups, dels) in groups.items():
        args += (key_type, len(ups) // 2, len(dels), *ups, *dels)
    return args


class _RedisBase:
    """Connection, retries, error wrapping and key names shared by both tiers."""

    name = "redis"
    tier = ""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._prefix = options.prefix
        self._client: Redis | RedisCluster | None = None
        # The Cluster client has no blocking pool (a full node pool raises at once): bound here.
        self._slots = asyncio.Semaphore(options.max_connections) if options.cluster else None
        self._wait = wait_random_exponential(multiplier=0.02, max=0.5)
        self._scripts: dict[str, Any] = {}
        self.on_retry: Callable[[], None] = lambda: None  # the store counts retries here

    async def open(self) -> None:
        """Connect and check the server answers."""
        client = self.options.connect()
        self._client = client
        self._scripts = {}
        try:
            await self._run("open", client.ping)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every connection; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _c(self) -> Redis | RedisCluster:
        if self._client is None:
            raise errors.StoreClosedError(f"redis {self.tier} backend is not open")
        return self._client

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._c().register_script(source)
        return script

    async def _run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` with transient errors retried (full jitter) and errors made typed."""
        try:
            async with self._slots or contextlib.nullcontext():
                try:
                    return await fn()
                except rex.RedisError as exc:
                    if self.options.retries <= 1 or not _transient(exc):
                        raise
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(self.options.retries - 1),
                    wait=self._wait,
                    retry=retry_if_exception(_transient),
                    reraise=True,
                    before=lambda _: self.on_retry(),
                )
                async for attempt in retrying:
                    with attempt:
                        return await fn()
                raise AssertionError("unreachable")  # pragma: no cover
        except (rex.RedisError, rex.RedisClusterException) as exc:
            raise self._error(op, exc) from exc

    def _error(self, op: str, exc: Exception) -> errors.StoreError:
        text = str(exc)
        if self.options.password:
            text = text.replace(self.options.password, "***")
        kind = type(exc).__name__
        if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)):
            return errors.UnavailableError(f"redis {op}: authentication refused ({kind})")
        if isinstance(exc, rex.ResponseError) and text.startswith("WRONGTYPE"):
            return errors.CorruptDataError(f"redis {op}: a key holds foreign data ({text})")
        return errors.UnavailableError(f"redis {op} failed: {kind}: {text}")

    async def _eval(self, op: str, source: str, keys: list[str], args: list[Any]) -> list[Any]:
        script = self._script(source)
        reply: list[Any] = await self._run(op, lambda: script(keys=keys, args=args))
        return reply

    def _base(self, addr: SessionAddr) -> str:
        return f"{self._prefix}:{{{addr.namespace}|{addr.session_id}}}:"

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One ``HMGET`` for all the ids."""
        if not ids:
            return {}
        key, client = self._base(addr) + "k:" + key_type, self._c()
        values: list[Any] = await self._run("get_keys", lambda: client.hmget(key, ids))
        return {i: v for i, v in zip(ids, values, strict=True) if v is not None}

    async def _hmget_creds(self, op: str, addr: SessionAddr) -> CredsRecord | None:
        key, client = self._base(addr) + "m", self._c()
        row: list[Any] = await self._run(op, lambda: client.hmget(key, ["creds", "v"]))
        blob, version = row
        if blob is None:
            return None
        try:
            return CredsRecord(bytes(blob), int(version))
        except (TypeError, ValueError):
            msg = f"redis: creds of session {addr} have no valid version"
            raise errors.CorruptDataError(msg) from None

    async def check(self) -> TierHealth:
        """One ``PING``; an outage gives ``ok=False``, never an exception."""
        start = time.perf_counter()
        try:
            await self._c().ping()
        except Exception as exc:  # a health probe reports, never raises
            return TierHealth(self.name, self.tier, False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        mode = "cluster" if self.options.cluster else "standalone"
        return TierHealth(self.name, self.tier, True, ms, mode)


def _reply_error(
    addr: SessionAddr, reply: list[Any], fence: int | None, expected: int | None
) -> None:
    """Raise the typed error a script reply stands for (nothing when it is OK)."""
    code = int(reply[0])
    if code == lua.FENCED:
        check_fence(addr, int(reply[1]), fence)
    elif code == lua.CONFLICT:
        check_version(addr, int(reply[1]), expected)
    elif code == lua.WRONG_TYPE:
        raise errors.CorruptDataError(f"redis: a key of session {addr} holds another Redis type")
    if code != lua.OK:
        raise errors.CorruptDataError(f"redis: unexpected script reply {code} for session {addr}")


class RedisDurable(RedisBatchMixin, RedisLeaseMixin, _RedisBase):
    """Redis-only durable tier (no TTL anywhere). See the module doc for the layout."""

    tier = "durable"

    async def open(self) -> None:
        """Connect, record the schema version, refuse a newer one."""
        await super().open()
        key, client = f"{self._prefix}:schema", self._c()
        try:
            await self._run("open", lambda: client.set(key, SCHEMA_VERSION, nx=True))
            found: Any = await self._run("open", lambda: client.get(key))
        except BaseException:
            await self.close()
            raise
        if int(found or 0) > SCHEMA_VERSION:
            await self.close()
            raise errors.UnavailableError(
                f"redis data schema {int(found)} is newer than this baileys-store"
            )

    def _member(self, addr: SessionAddr) -> str:
        return f"{addr.namespace}\0{addr.session_id}"

    async def _index(self, addr: SessionAddr, *, add: bool) -> None:
        key, member, client = f"{self._prefix}:sessions", self._member(addr), self._c()
        if add:
            await self._run("index", lambda: client.zadd(key, {member: 0}))
        else:
            await self._run("index", lambda: client.zrem(key, member))

    async def _creating(
        self, op: str, source: str, addr: SessionAddr, keys: list[str], *, fence: int | None,
        args: list[Any], expected: int | None = None,
    ) -> list[Any]:  # fmt: skip
        """Run a script that may create the session; index the session before it exists."""
        head = ["" if fence is None else str(fence), f"{time.time():.6f}"]
        reply = await self._eval(op, source, keys, [*head, "0", *args])
        if int(reply[0]) == lua.NEEDS_INDEX:
            await self._index(addr, add=True)
            reply = await self._eval(op, source, keys, [*head, "1", *args])
            if int(reply[0]) == lua.OK:  # again: a delete may have dropped the entry meanwhile
                await self._index(addr, add=True)
        _reply_error(addr, reply, fence, expected)
        return reply

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """One Lua script: fence check, then every upsert and delete."""
        if not writes:  # an empty write (a touch) updates an existing session only
            await self.touch(addr, fence)
            return
        base, groups = self._base(addr), _groups(writes)
        keys = [base + "m", base + "t", *(base + "k:" + t for t in groups)]
        args = _group_args(groups)
        await self._creating("write_keys", lua.WRITE_KEYS, addr, keys, fence=fence, args=args)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Drop every type hash named in the session's type set."""
        base = self._base(addr)
        head = ["" if fence is None else str(fence), f"{time.time():.6f}", base + "k:"]
        reply = await self._eval("clear_keys", lua.CLEAR_KEYS, [base + "m", base + "t"], head)
        _reply_error(addr, reply, fence, None)
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
            "save_creds", lua.SAVE_CREDS, addr, keys,
            fence=fence, args=[blob, exp], expected=expected_version,
        )  # fmt: skip
        return int(reply[1])

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete the session's keys atomically, then its index entry (re-added if recreated)."""
        base, client = self._base(addr), self._c()
        keys, args = [base + "m", base + "t"], ["" if fence is None else str(fence), base + "k:"]
        reply = await self._eval("delete_session", lua.DELETE_SESSION, keys, args)
        _reply_error(addr, reply, fence, None)
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


class RedisCache(_RedisBase):
    """Cache tier: same layout under ``<prefix>c:``, every key expiring ``ttl`` after its write."""

    tier = "cache"

    async def put_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """Upserts and evictions of several types in one atomic script."""
        if not writes:
            return
        base, groups = self._base(addr), _groups(writes)
        keys = [base + "t", *(base + "k:" + t for t in groups)]
        args = [self.options.ttl * 1000, *_group_args(groups)]
        _reply_error(addr, await self._eval("put_keys", lua.CACHE_PUT, keys, args), None, None)

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
