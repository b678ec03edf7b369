"""AuthStore: the public store object; the tiers' logic lives in :mod:`.tiering`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from ._config import StoreConfig
from ._health import StoreHealth, health
from ._lifecycle import close_tiers, open_tiers
from ._model import CredsRecord, KeyWrite, SessionAddr, check_namespace, session_addr
from ._purge import PurgeReport, purge_sessions
from ._rotation import RotationReport, rotate_keys
from ._session import SessionAuth
from .backends._registry import make_cache, make_durable
from .codec import Codec
from .contracts import CacheBackend, DurableBackend
from .errors import (
    StoreClosedError,
    StoreError,
    UnavailableError,
)
from .observability._metric_families import result_of
from .observability._metrics import Metrics, StoreMetrics
from .observability._tracing import span
from .resilience import BreakerSettings, CircuitBreaker
from .results import DeadLetterRetry, SessionInfo
from .tiering import TierGuard
from .tiering._build import build_engine
from .tiering._dead import retry_dead_letters
from .tiering._reconnect import CacheReconnect

T = TypeVar("T")
log = logging.getLogger("baileys_store")


class AuthStore:
    """The store. Get one from :func:`open_store`; get sessions from :meth:`session`."""

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        durable: DurableBackend | None = None,
        cache: CacheBackend | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config = config or StoreConfig()
        # Default: the global Prometheus registry (several stores share its metric families).
        self.metrics: Metrics = metrics if metrics is not None else StoreMetrics()
        self.codec: Codec = config.codec()
        self.durable: DurableBackend = durable or make_durable(config)
        self.cache: CacheBackend | None = cache if durable or cache else make_cache(config)
        settings = BreakerSettings.from_config(config)
        self.breakers = {
            t: CircuitBreaker(t, settings, on_transition=self._transition)
            for t in ("durable", "cache")
        }
        for tier in ("durable", "cache") if self.cache is not None else ("durable",):
            # A gauge with labels has no sample until set: show "closed" from the start.
            self.metrics.breaker_state(tier, self.breakers[tier].state)
        self._guard = TierGuard(
            self.breakers,
            config.op_timeout,
            abandon_durable=not getattr(self.durable, "cancels_promptly", False),
            local_cache=getattr(self.cache, "in_process", False),
            observe=self.metrics.observe_op,
        )
        self._engine, self._worker = build_engine(
            config, self.durable, self.cache, self._guard, self.metrics
        )
        for tier, backend in (("durable", self.durable), ("cache", self.cache)):
            if hasattr(backend, "on_retry"):  # the server backends count their retries
                backend.on_retry = lambda t=tier: self.metrics.retry(t)  # type: ignore[union-attr]
        self._open = False
        self._reconnect: CacheReconnect | None = None

    async def open(self) -> None:
        """Open the tiers (durable first: it is the one that must work).

        With a Redis cache, an unreachable Redis does not fail ``open``: the store starts
        degraded (reads and write-through writes go to the durable tier) and uses Redis once
        it answers. In write-behind mode Redis is the primary, so it must answer.

        Raises:
            ConfigError: the durable tier's metadata does not match the configuration
                (encryption mode, master keys), or the Redis prefix belongs to another store.
            UnavailableError: the durable tier (or, in write-behind, Redis) did not answer.
        """
        await open_tiers(self)
        self._open = True

    async def close(self) -> None:
        """Stop the worker, release leases, close the tiers; idempotent."""
        self._open = False
        await close_tiers(self)

    async def __aenter__(self) -> AuthStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def session(self, session_id: str, *, namespace: str = "default") -> SessionAuth:
        """The session ``(namespace, session_id)``; both are validated here.

        Raises:
            InvalidInputError: a bad namespace or session id.
        """
        return SessionAuth(self, session_addr(namespace, session_id))

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Every session stored in the durable tier (optionally of one namespace).

        With an outbox, pending entries are drained first, so a session written a moment ago
        in write-behind mode is listed too.
        """
        self._check_open()
        ns = check_namespace(namespace) if namespace is not None else None
        if self._worker is not None:
            # Best effort: sessions only in the outbox yet get listed too; one that another
            # worker is draining right now is listed once that worker is done.
            with contextlib.suppress(UnavailableError):
                await self.drain_outbox()
        async for info in self.durable.list_sessions(ns):
            yield info

    async def touch(self, session_id: str, *, namespace: str = "default") -> bool:
        """Mark a session as alive now (its ``updated_at``), so a purge keeps it.

        Returns False when the session does not exist (a touch never creates one). Like any
        write it needs the session's lease when leases are on.
        """
        self._check_open()
        addr = session_addr(namespace, session_id)
        found = False
        async for info in self.durable.list_sessions(addr.namespace):
            if info.session_id == addr.session_id:
                found = True
                break
            if info.session_id > addr.session_id:  # listed in order: it is not there
                break
        if found:
            await self._write_keys(addr, [])
        return found

    async def purge(
        self, older_than: float, *, namespace: str | None = None, dry_run: bool = False
    ) -> PurgeReport:
        """Delete every session not written for ``older_than`` seconds (explicit retention).

        Nothing ever expires by itself; this is the only way data goes away in bulk. A session
        leased by another process (in use right now) is skipped and counted, never deleted.

        Raises:
            InvalidInputError: ``older_than`` is not positive.
        """
        return await purge_sessions(self, older_than, namespace=namespace, dry_run=dry_run)

    async def rotate_keys(
        self,
        *,
        namespace: str | None = None,
        progress: Callable[[RotationReport], None] | None = None,
        verify: bool = False,
    ) -> RotationReport:
        """Re-encrypt every record with the active master key, online and resumable.

        See :mod:`baileys_store._rotation` (README "Key rotation"). Sessions another process
        holds are skipped and counted in ``in_use``; records that fail to authenticate are
        left alone and counted in ``failed``. ``verify``: only check, write nothing.

        Raises:
            ConfigError: a custom durable backend that cannot list keys.
        """
        self._check_open()
        return await rotate_keys(self, namespace=namespace, progress=progress, verify=verify)

    async def retry_dead_letters(
        self, session_id: str, *, namespace: str = "default"
    ) -> DeadLetterRetry:
        """Put a session's dead letters back into the outbox: the records still current.

        A dead record a later write replaced is dropped, not re-applied (it would roll the newer
        value back); see README "Dead letters". The worker then applies what was requeued.

        Raises:
            ConfigError: the store has no outbox (no ``redis://`` cache).
            LeaseHeldError: write-through mode and another process holds the session.
            UnavailableError: Redis could not answer.
        """
        self._check_open()
        return await retry_dead_letters(self._engine, session_addr(namespace, session_id))

    async def release(self, session_id: str, *, namespace: str = "default") -> bool:
        """Release this process's lease on a session now (another process may then take it).

        Returns False when the store holds no lease on it (or leases are off).
        """
        self._check_open()
        leases = self._engine.leases
        return (
            False if leases is None else await leases.release(session_addr(namespace, session_id))
        )

    async def drain_outbox(self) -> int:
        """Apply the pending outbox entries now (all sessions); a barrier.

        Returns the entries applied here, once every entry appended before the call (by any
        process) is in the durable tier, including a batch this process's worker had claimed.
        Sessions another worker is draining are waited for (up to ``op_timeout`` each). An
        entry moved to the dead letters counts as done (see :meth:`retry_dead_letters`).

        Raises:
            UnavailableError: some sessions were not drained in time (named in the message:
                busy elsewhere, a failing head entry retried later, or a tier down).
        """
        self._check_open()
        if self._worker is None:
            return 0
        extra = list(self._engine.behind)  # this process's pending sessions, even if unindexed
        return await self._worker.barrier(extra, wait=self.config.op_timeout)

    def acknowledge_data_loss(self, session_id: str, *, namespace: str = "default") -> bool:
        """Accept that a session lost write-behind entries; it serves its durable state again.

        After Redis lost its data (README "Consistency and failure") the sessions with entries
        pending in this process raise :class:`~baileys_store.errors.DataLossError` until this
        is called (or the session is deleted). Returns False when the session was not marked.
        """
        self._check_open()
        watch = getattr(self._engine, "watch", None)
        return watch is not None and watch.acknowledge(session_addr(namespace, session_id))

    async def check(self) -> StoreHealth:
        """Ask every tier for a round trip and aggregate (see :class:`StoreHealth`)."""
        self._check_open()
        return await health(self._engine, self.breakers, self.durable, self.config.op_timeout)

    def _transition(self, tier: str, old: str, new: str) -> None:
        self.metrics.breaker_state(tier, new)
        log.warning(
            "circuit breaker %s: %s -> %s",
            tier,
            old,
            new,
            extra={"event": "breaker_transition", "tier": tier, "state": new},
        )

    async def _timed(self, op: str, addr: SessionAddr, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation, counting it by outcome (labels never name the session)."""
        self._check_open()
        start = time.perf_counter()
        result = "ok"
        try:
            with span(
                f"baileys_store.{op}",
                system=self.durable.name,
                operation=op,
                namespace=addr.namespace,
                tier="store",
            ):
                return await fn()
        except StoreError as exc:
            result = result_of(exc)
            if result == "conflict":
                self.metrics.version_conflict()
            raise
        finally:
            metrics, engine = self.metrics, self._engine
            metrics.observe_op(op, "store", result, time.perf_counter() - start, addr.namespace)
            held = len(engine.leases.held) if engine.leases is not None else 0
            metrics.sessions_in_use(max(len(engine.states), held))

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosedError("the store is closed; use `async with open_store(...)`")

    # -- used by SessionAuth / KeyStore ----------------------------------------------------

    async def _get_blobs(
        self, addr: SessionAddr, key_type: str, ids: list[str]
    ) -> dict[str, bytes]:
        engine = self._engine
        return await self._timed("get_keys", addr, lambda: engine.get_blobs(addr, key_type, ids))

    async def _write_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        await self._timed("write_keys", addr, lambda: self._engine.write_keys(addr, writes))

    async def _clear_keys(self, addr: SessionAddr) -> None:
        await self._timed("clear_keys", addr, lambda: self._engine.clear_keys(addr))

    async def _load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        return await self._timed("load_creds", addr, lambda: self._engine.load_creds(addr))

    async def _save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        engine = self._engine
        return await self._timed(
            "save_creds", addr, lambda: engine.save_creds(addr, blob, expected)
        )

    async def _delete_session(self, addr: SessionAddr) -> bool:
        return await self._timed("delete_session", addr, lambda: self._engine.delete_session(addr))


@asynccontextmanager
async def open_store(
    config: StoreConfig | str | None = None, *, metrics: Metrics | None = None
) -> AsyncIterator[AuthStore]:
    """Open a store for the duration of an ``async with`` block.

    Args:
        config: A :class:`StoreConfig`, a durable URL (other settings default), or ``None`` for
            the embedded default (``sqlite:///baileys-store.db`` + in-process cache).
        metrics: Where to count: ``StoreMetrics(registry)``; default: the global Prometheus
            registry; ``NullMetrics()`` counts nothing.
    """
    if isinstance(config, str):
        config = StoreConfig(durable=config)
    store = AuthStore(config, metrics=metrics)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
