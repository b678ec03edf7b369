"""Redis backends, continued: what both tiers share, and key writes as script arguments.

:class:`RedisBase` holds the connection, retries, error typing and key names. Split from
:mod:`.redis` to keep modules small, and so the mixins import these without a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis import exceptions as rex
from redis.asyncio import Redis, RedisCluster
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..results import TierHealth
from . import _redis_scripts as lua
from ._fences import check_fence, check_version
from ._redis_prefix import eviction_policy, policy_warning, warn_policy
from ._redis_url import RedisOptions

T = TypeVar("T")
# Most ids one command or script takes: one call of 200k ids would hold Redis (single-threaded)
# for every other tenant for as long as it runs; chunks let other clients in between.
ID_CHUNK = 5000


def transient(exc: BaseException) -> bool:
    """Errors worth one more try: lost connections, timeouts, failover in progress."""
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)):
        return False
    kinds = (
        rex.ConnectionError,
        rex.TimeoutError,
        rex.TryAgainError,
        rex.ClusterDownError,
        rex.ReadOnlyError,
    )
    return isinstance(exc, kinds)


def groups_of(writes: Sequence[KeyWrite]) -> dict[str, tuple[list[bytes | str], list[str]]]:
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


def group_args(groups: dict[str, tuple[list[bytes | str], list[str]]]) -> list[bytes | str | int]:
    args: list[bytes | str | int] = []
    for key_type, (ups, dels) in groups.items():
        args += (key_type, len(ups) // 2, len(dels), *ups, *dels)
    return args


class RedisBase:
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
            await warn_policy(self)
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
                    if self.options.retries <= 1 or not transient(exc):
                        raise
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(self.options.retries - 1),
                    wait=self._wait,
                    retry=retry_if_exception(transient),
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
        """One ``HMGET`` per 5,000 ids (so a call for more is not one snapshot)."""
        key, client = self._base(addr) + "k:" + key_type, self._c()
        found: dict[str, bytes] = {}
        for lo in range(0, len(ids), ID_CHUNK):
            part = list(ids[lo : lo + ID_CHUNK])
            values: list[Any] = await self._run("get_keys", lambda p=part: client.hmget(key, p))  # type: ignore[misc]
            found.update((i, v) for i, v in zip(part, values, strict=True) if v is not None)
        return found

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
        """One ``PING``; an outage gives ``ok=False``, never an exception.

        The detail names the mode and the ``maxmemory-policy``, with a warning when that
        policy can evict keys we keep without a TTL (``ok`` stays True: Redis serves).
        """
        start = time.perf_counter()
        try:
            await self._c().ping()
        except Exception as exc:  # a health probe reports, never raises
            return TierHealth(self.name, self.tier, False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        mode = "cluster" if self.options.cluster else "standalone"
        policy = await eviction_policy(self)
        warning = policy_warning(self.tier, policy)
        detail = f"{mode}; " + (f"warning: {warning}" if warning else f"maxmemory-policy {policy}")
        return TierHealth(self.name, self.tier, True, ms, detail)


def reply_error(
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
