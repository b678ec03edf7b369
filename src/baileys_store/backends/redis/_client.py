"""The script runner each Redis tier owns: the client, per-op retries, typed errors, key names.

One :class:`ScriptRunner` per backend object: it connects, runs a command or a Lua script (see
:mod:`._scripts`) with transient errors retried through :func:`baileys_store.resilience.retrying`,
turns redis-py errors into :class:`~baileys_store.errors.StoreError` subclasses (the password
kept out of every message), and names a session's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rex
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from ... import errors
from ..._model import SessionAddr
from ...resilience import RetryPolicy, retrying
from ...results import TierHealth
from ._prefix import eviction_policy, policy_warning, warn_policy
from ._scripts import source
from ._url import RedisOptions

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


def index_member(addr: SessionAddr) -> str:
    """A session as a member of a global index (``ns NUL sid``: sorts in address order)."""
    return f"{addr.namespace}\0{addr.session_id}"


class ScriptRunner:
    """The redis-py client of one tier, and how every command and script of it is run.

    Args:
        options: The parsed URL.
        tier: ``durable`` or ``cache`` (for messages, health and the eviction warning).
        on_retry: Called before each retry (the store counts them).
    """

    def __init__(
        self, options: RedisOptions, *, tier: str, on_retry: Callable[[], None] | None = None
    ) -> None:
        self.options = options
        self.tier = tier
        self.prefix = options.prefix
        self._client: Redis | RedisCluster | None = None
        # The Cluster client has no blocking pool (a full node pool raises at once): bound here.
        self._slots = asyncio.Semaphore(options.max_connections) if options.cluster else None
        self._scripts: dict[str, AsyncScript] = {}
        self._retry = RetryPolicy(
            attempts=options.retries, transient=transient, base=0.02, cap=0.5, on_retry=on_retry
        )

    async def open(self) -> None:
        """Connect, check the server answers, warn when its policy can evict our keys."""
        client = self.options.connect()
        self._client = client
        self._scripts = {}
        try:
            await self.run("open", client.ping)
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

    @property
    def client(self) -> Redis | RedisCluster:
        """The connected client (:class:`StoreClosedError` when not open)."""
        if self._client is None:
            raise errors.StoreClosedError(f"redis {self.tier} backend is not open")
        return self._client

    def base(self, addr: SessionAddr) -> str:
        """The name every key of the session starts with (its hash tag included)."""
        return f"{self.prefix}:{{{addr.namespace}|{addr.session_id}}}:"

    def script(self, name: str) -> AsyncScript:
        """The registered script ``lua/<name>.lua`` (to run in a pipeline)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source(name))
        return script

    async def run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` with transient errors retried (full jitter) and errors made typed.

        Bounded by ``op_timeout`` in all (the client has no socket timeout by default): a
        caller outside the store's guard (the CLI) never waits on a hung server either.
        """
        try:
            async with asyncio.timeout(self.options.op_timeout):
                async with self._slots or contextlib.nullcontext():
                    return await retrying(self._retry, fn)
        except (rex.RedisError, rex.RedisClusterException) as exc:
            raise self._error(op, exc) from exc
        except TimeoutError:
            raise errors.UnavailableError(
                f"redis {op}: no answer within {self.options.op_timeout}s"
            ) from None

    async def eval(self, op: str, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the script ``name`` (see :meth:`run`); its raw reply."""
        script = self.script(name)
        return await self.run(op, lambda: script(keys=keys, args=args))

    async def set_once(self, op: str, key: str, value: str) -> str:
        """``SET NX`` then ``GET`` in one round trip: the value that won."""
        client = self.client

        async def run() -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, value, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        found = await self.run(op, run)
        return found.decode() if isinstance(found, bytes) else str(found)

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

    async def check(self) -> TierHealth:
        """One ``PING``; an outage gives ``ok=False``, never an exception.

        The detail names the mode and the ``maxmemory-policy``, with a warning when that
        policy can evict keys we keep without a TTL (``ok`` stays True: Redis serves).
        """
        start = time.perf_counter()
        try:
            await self.client.ping()
        except Exception as exc:  # a health probe reports, never raises
            return TierHealth("redis", self.tier, False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        mode = "cluster" if self.options.cluster else "standalone"
        policy = await eviction_policy(self)
        warning = policy_warning(self.tier, policy)
        detail = f"{mode}; " + (f"warning: {warning}" if warning else f"maxmemory-policy {policy}")
        return TierHealth("redis", self.tier, True, ms, detail)
