"""AuthStore: the public store object. The tiers' logic lives in :mod:`.tiering`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ._config import StoreConfig
from ._model import check_namespace, session_addr
from ._purge import purge_sessions
from ._session import SessionAuth
from .backends._registry import make_cache, make_durable
from .contracts import CacheBackend, DurableBackend, Outbox, OutboxTransport
from .errors import ConfigError, UnavailableError
from .observability._metrics import Metrics, StoreMetrics
from .results import DeadLetterRetry, PurgeReport, RotationReport, SessionInfo, StoreHealth
from .tiering import Engine
from .tiering._dead import retry_dead_letters
from .tiering._health import health
from .tiering._rotation import rotate_keys
from .tiering._tiers import closed


class AuthStore:
    """The store. Get one from :func:`open_store`; get sessions from :meth:`session`.

    Args:
        config: The settings (default: the embedded SQLite store with an in-process cache).
        durable: A durable backend to use instead of the one ``config.durable`` names (one
            implementing :class:`~baileys_store.contracts.DurableBackend`).
        cache: A cache backend to use with it (``None``: no cache, when ``durable`` is given).
        metrics: Where to count: ``StoreMetrics(registry)``; default: the global Prometheus
            registry; ``NullMetrics()`` counts nothing.
    """

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
        self.codec = config.codec()
        m = self.metrics
        self.durable = durable or make_durable(config, on_retry=lambda: m.retry("durable"))
        self.cache = cache if durable or cache else make_cache(config, lambda: m.retry("cache"))
        self._engine = Engine(config, self.durable, self.cache, codec=self.codec, metrics=m)
        self.breakers = self._engine.breakers

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
        await self._engine.open()

    async def close(self) -> None:
        """Stop the worker, release leases, close the tiers; idempotent."""
        await self._engine.close()

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
        return SessionAuth(self._engine.ops(session_addr(namespace, session_id)))

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Every session stored in the durable tier (optionally of one namespace).

        With an outbox, pending entries are drained first, so a session written a moment ago
        in write-behind mode is listed too.
        """
        self._check_open()
        ns = check_namespace(namespace) if namespace is not None else None
        if self._engine.worker is not None:
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
            await self._engine.writes.write_keys(addr, [])
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

        See :mod:`baileys_store.tiering._rotation` (README "Key rotation"). Sessions another
        process holds are skipped and counted in ``in_use``; records that fail to authenticate
        are left alone and counted in ``failed``. ``verify``: only check, write nothing.
        """
        self._check_open()
        sessions = self.list_sessions(namespace)
        return await rotate_keys(self._engine, sessions, progress=progress, verify=verify)

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
        engine = self._engine
        addr = session_addr(namespace, session_id)
        return await retry_dead_letters(engine.tiers, engine.writes, addr)

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
        return await self._engine.drain_outbox()

    @property
    def outbox(self) -> Outbox:
        """The write-behind outbox of a Redis cache (what ``baileys-store outbox`` inspects).

        Raises:
            ConfigError: the store has no outbox (no ``redis://`` cache).
        """
        shared = self._engine.shared
        if shared is None:
            raise ConfigError(
                "this store has no outbox: it needs a redis:// cache (BAILEYS_STORE_CACHE)"
            )
        return shared.outbox

    @property
    def outbox_transport(self) -> OutboxTransport | None:
        """The broker the write-behind outbox is published to (``None``: the Redis outbox alone)."""
        return self._engine.transport

    @property
    def outbox_worker_id(self) -> str | None:
        """The id of this store's outbox worker (``None`` without an outbox)."""
        worker = self._engine.worker
        return worker.worker_id if worker is not None else None

    def acknowledge_data_loss(self, session_id: str, *, namespace: str = "default") -> bool:
        """Accept that a session lost write-behind entries; it serves its durable state again.

        After Redis lost its data (README "Consistency and failure") the sessions with entries
        pending in this process raise :class:`~baileys_store.errors.DataLossError` until this
        is called (or the session is deleted). Returns False when the session was not marked.
        """
        self._check_open()
        watch = self._engine.watch
        return watch is not None and watch.acknowledge(session_addr(namespace, session_id))

    async def check(self) -> StoreHealth:
        """Ask every tier for a round trip and aggregate (see :class:`StoreHealth`)."""
        self._check_open()
        return await health(self._engine)

    def _check_open(self) -> None:
        if not self._engine.is_open:
            raise closed()


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
