"""The script runner each Redis tier owns: the client, per-op retries, typed errors, key names.

One :class:`ScriptRunner` per backend object: it connects, runs a command or a Lua script (see
:mod:`._scripts`) with transient errors retried through :func:`baileys_store.resilience.retrying`,
turns redis-py errors into :class:`~baileys_store.errors.StoreError` subclasses (the passwords
kept out of every message), and names a session's keys.

**What is repeated.** Every script of this store is safe to run twice: the durable writes are
fenced, versioned upserts (a repeated ``save_creds`` with an expected version answers with the
version it made), the cache's fills carry a write stamp, its updates and evictions converge,
lease scripts only raise tokens. The exceptions are the write-behind appends (``wb_keys``,
``wb_creds``, a requeue of dead letters): each run appends another outbox entry, so a failure
whose outcome is unknown (the connection broke after the command was sent) is **not** retried:
it raises :class:`~baileys_store.errors.UnavailableError` (the write is not acknowledged; it may
still be applied, like any write that reported an error). They are retried only when the
connection failed before anything was sent (:class:`._era.NotSentError`), as during a Sentinel
failover while the sentinels have no master to give.

**Era.** In standalone and sentinel modes each new connection probes the master's era (see
:mod:`._era`); the scripts compare it with the era a session's cached data was written in.
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
from ._era import ERA_KEY, EraProbe, NotSentError, with_probe
from ._pipeline import Coalescer
from ._prefix import eviction_policy, policy_warning, warn_policy
from ._scripts import source
from ._sentinel import check_service, master_address
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


def not_sent(exc: BaseException) -> bool:
    """Errors that prove the command was never sent (worth a retry of any command)."""
    return isinstance(exc, NotSentError)


# Read scripts that run the era check (``enter`` in lua/_hybrid.lua), so need its library.
_ERA_READS = frozenset({"read_keys", "read_creds"})


def _hybrid_library() -> str:
    return source("_common") + source("_hybrid")


# Scripts that append an outbox entry on every run: retried only when nothing was sent.
NOT_REPEATABLE = frozenset({"wb_keys", "wb_creds", "requeue"})


def index_member(addr: SessionAddr) -> str:
    """A session as a member of a global index (``ns NUL sid``: sorts in address order)."""
    return f"{addr.namespace}\0{addr.session_id}"


async def era_tokens(runner: ScriptRunner, addr: SessionAddr) -> None:
    """Before a lease acquisition: raise the session's tokens in a new era (``era_tokens``).

    One round trip per acquisition (none in a Cluster, which has no era).
    """
    if runner.era is not None:
        await runner.eval("acquire_lease", "era_tokens", [runner.base(addr) + "b"], [])


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
        self._sentinel: Any = None
        # The Cluster client has no blocking pool (a full node pool raises at once): bound here.
        self._slots = asyncio.Semaphore(options.max_connections) if options.cluster else None
        self._scripts: dict[str, AsyncScript] = {}
        self._batch: Coalescer | None = None
        # A Cluster has one master per slot range: no single era (see ``_era``).
        self.era = None if options.cluster else EraProbe(ERA_KEY, tier)
        self._head = (
            f"local ERA_KEY = '{self.era.key}'\n" if self.era else "local ERA_KEY = false\n"
        )
        # Sentinel: attempts until 80% of op_timeout, so a short failover is not seen.
        deadline = options.op_timeout * 0.8 if options.mode == "sentinel" else None
        kw: dict[str, Any] = {"base": 0.02, "cap": 0.5, "deadline": deadline, "on_retry": on_retry}
        self._retry = RetryPolicy(attempts=options.retries, transient=transient, **kw)
        self._retry_unsent = RetryPolicy(attempts=options.retries, transient=not_sent, **kw)

    async def open(self) -> None:
        """Connect, check the server answers, warn when its policy can evict our keys.

        Sentinel mode first asks the sentinels for the service's master: an unknown service is
        a :class:`ConfigError`, no sentinel answering an :class:`UnavailableError`.
        """
        wrap = with_probe(self.era) if self.era is not None else None
        client, self._sentinel = self.options.connect(wrap)
        self._client = client
        self._scripts = {}
        # Auto-pipelining, but in a Cluster (whose pipelines must be routed per node).
        self._batch = None if isinstance(client, RedisCluster) else Coalescer(client)
        try:
            if self._sentinel is not None:
                await self._check_service()
            await self.run("open", client.ping)
            await warn_policy(self)
        except BaseException:
            await self.close()
            raise

    async def _check_service(self) -> None:
        try:
            async with asyncio.timeout(self.options.op_timeout):
                await check_service(self._sentinel, self.options.service)
        except TimeoutError:
            raise errors.UnavailableError(
                f"redis sentinel: no answer within {self.options.op_timeout}s"
            ) from None

    async def close(self) -> None:
        """Close every connection; idempotent."""
        client, self._client = self._client, None
        sentinel, self._sentinel = self._sentinel, None
        batch, self._batch = self._batch, None
        if batch is not None:
            await batch.close()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        if sentinel is not None:
            with contextlib.suppress(Exception):
                await sentinel.aclose()

    @property
    def batch(self) -> Coalescer | None:
        """The auto-pipelining of this client (``None`` in a Cluster, or when not open)."""
        return self._batch

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
            # ERA_KEY first: the scripts read the server's era there (false in a Cluster).
            text = source(name)
            if name in _ERA_READS and not text.startswith(_hybrid_library()):
                text = _hybrid_library() + text  # the era check of the read scripts
            text = self._head + text
            script = self._scripts[name] = self.client.register_script(text)
        return script

    async def run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` with transient errors retried (full jitter) and errors made typed.

        Bounded by ``op_timeout`` in all (the client has no socket timeout by default): a
        caller outside the store's guard (the CLI) never waits on a hung server either.
        """
        policy = self._retry_unsent if op in NOT_REPEATABLE else self._retry
        try:
            async with asyncio.timeout(self.options.op_timeout):
                async with self._slots or contextlib.nullcontext():
                    return await retrying(policy, fn)
        except (rex.RedisError, rex.RedisClusterException) as exc:
            raise self._error(op, exc) from exc
        except TimeoutError:
            raise errors.UnavailableError(
                f"redis {op}: no answer within {self.options.op_timeout}s"
            ) from None

    async def eval(self, op: str, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the script ``name`` (see :meth:`run`); its raw reply.

        Outside a Cluster the ``EVALSHA`` rides in the loop iteration's pipeline
        (:class:`~._pipeline.Coalescer`); a server that lacks the script (restarted, flushed,
        a failover) gets it loaded once and the call is sent again.
        """
        script = self.script(name)
        batch = self._batch
        if batch is None:
            return await self.run(op, lambda: script(keys=keys, args=args))
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        async def call() -> Any:
            reply = (await batch.execute((command,)))[0]
            if isinstance(reply, rex.NoScriptError):
                await self.client.script_load(script.script)
                reply = (await batch.execute((command,)))[0]
            if isinstance(reply, Exception):
                raise reply
            return reply

        return await self.run(op, call)

    async def command(self, op: str, *args: Any) -> Any:
        """Run one command (see :meth:`run`), in the iteration's pipeline outside a Cluster.

        Its raw reply: no redis-py response callback runs (``HMGET`` gives a list of bytes
        or None, ``SET`` gives ``b"OK"``).
        """
        batch = self._batch
        if batch is None:
            return await self.run(op, lambda: self.client.execute_command(*args))

        async def call() -> Any:
            reply = (await batch.execute((args,)))[0]
            if isinstance(reply, Exception):
                raise reply
            return reply

        return await self.run(op, call)

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
        if isinstance(exc, NotSentError) and isinstance(exc.__cause__, rex.RedisError):
            exc = exc.__cause__  # name the error the connection met, not our marker
        text = str(exc)
        for secret in self.options.secrets:
            text = text.replace(secret, "***")
        kind = type(exc).__name__
        if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)):
            return errors.UnavailableError(f"redis {op}: authentication refused ({kind})")
        if isinstance(exc, rex.ResponseError) and text.startswith("WRONGTYPE"):
            return errors.CorruptDataError(f"redis {op}: a key holds foreign data ({text})")
        return errors.UnavailableError(f"redis {op} failed: {kind}: {text}")

    async def check(self) -> TierHealth:
        """One ``PING``; an outage gives ``ok=False``, never an exception.

        The detail names the topology (mode, master address, replicas connected and in sync:
        ``online`` with a lag of at most 1 s) and the ``maxmemory-policy``, with a warning when
        that policy can evict keys we keep without a TTL (``ok`` stays True: Redis serves).
        """
        start = time.perf_counter()
        try:
            await self.client.ping()
        except Exception as exc:  # a health probe reports, never raises
            return TierHealth("redis", self.tier, False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        policy = await eviction_policy(self)
        warning = policy_warning(self.tier, policy)
        topology = await self._topology()
        detail = f"{topology}; " + (
            f"warning: {warning}" if warning else f"maxmemory-policy {policy}"
        )
        return TierHealth("redis", self.tier, True, ms, detail)

    async def _topology(self) -> str:
        """Mode, master address, replicas connected / in sync (``INFO replication``).

        A standalone server without replicas (and no restart seen) is just ``standalone``.
        """
        options = self.options
        if options.cluster:
            return "cluster"
        if options.mode == "sentinel":
            where = f"sentinel service {options.service}, master {master_address(self.client)}"
        else:
            where = f"standalone {options.host}:{options.port}"
        try:
            info: Any = await self.client.info("replication")
        except Exception:  # INFO refused (ACL, renamed): report what we know
            return f"{where}, replicas unknown"
        role = str(info.get("role", "?"))
        if role != "master":
            return f"{where} (role {role}: not a master)"
        connected = int(info.get("connected_slaves", 0))
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        synced = [r for r in replicas if r.get("state") == "online" and int(r.get("lag", 99)) <= 1]
        lag = max((int(r.get("lag", 0)) for r in replicas), default=0)
        changes = self.era.changes if self.era is not None else 0
        if options.mode == "standalone" and not connected and not changes:
            return "standalone"  # a plain server: nothing more to tell than before
        text = f"{where}, replicas {connected} connected, {len(synced)} in sync"
        if replicas:
            text += f" (max lag {lag}s)"
        if changes:
            text += f", master changed {changes}x since open"
        return text
