"""PostgreSQL durable tier: psycopg 3 (async) behind a ``psycopg_pool`` connection pool.

The package: :class:`PostgresDurable` (the backend) and :func:`from_config`, over ``_run``
(the pool, retries, transactions, error mapping), ``_queries`` (keys and creds), ``_leases``
(fence barrier, outbox batches, leases), ``_listing``, ``_schema`` (the statements),
``_migrations`` (the DDL of each schema version) and ``_url``.

Every write is one transaction sent as one pipeline: ``BEGIN``, the session upsert that checks
the fence (and locks the row), the key statements, ``COMMIT`` — a single round trip. A failed
check raises inside the server, which aborts the rest of the pipeline, so nothing is applied.
Reads use autocommit connections: one statement, one round trip, ``id = ANY(array)``.

Connections are autocommit with prepared statements off by default (``prepare_threshold=None``)
so transaction-mode poolers such as pgbouncer work; ``prepare_threshold=N`` turns them on.

Timeouts are client-side: ``op_timeout`` bounds each operation, retries included, and on expiry
psycopg cancels the running query on the server. For a server-side bound as well, pass libpq's
``options=-c%20statement_timeout%3D5000`` in the URL (libpq parameters are passed on as given).
Transient errors (a rolled-back transaction, a dead connection) are retried through
``resilience.retrying``, ``retries=`` times (default 3); a dead connection purges the pool's
idle connections first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import PoolTimeout

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import DurableBackend, LeaseBackend
from ...results import SessionInfo, TierHealth
from . import _leases, _listing, _queries
from ._run import PgRunner, reports_read_only
from ._url import PgSettings, parse_postgres_url

if TYPE_CHECKING:
    from ..._config import StoreConfig


class PostgresDurable(DurableBackend, LeaseBackend):
    """Durable tier in PostgreSQL, with leases in the same schema.

    Args:
        settings: Parsed URL (see :func:`parse_postgres_url`).
        op_timeout: Seconds one operation may take, retries included.
        on_retry: Called before each retry (the store counts retries with it).
    """

    name = "postgres"

    def __init__(
        self,
        settings: PgSettings,
        *,
        op_timeout: float,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.on_retry: Callable[[], None] = on_retry or (lambda: None)
        self._runner = PgRunner(settings, op_timeout=op_timeout, on_retry=self._retried)
        self.store_id = ""  # known once open

    def _retried(self) -> None:
        # Looks on_retry up at each retry, so the store's later assignment of it is honoured.
        self.on_retry()

    async def open(self) -> None:
        """Migrate the schema on a direct connection, then open the pool.

        The direct connection fails fast with the server's own reason (wrong password, no
        such database), where a pool would only time out. Opening an open backend is a no-op.
        """
        if self._runner.pool is None:
            self.store_id = await self._runner.open()

    async def close(self) -> None:
        """Close the pool; idempotent."""
        await self._runner.close()

    async def check(self) -> TierHealth:
        """``SELECT 1`` on a pooled connection; never raises for an outage.

        The detail names the schema and the server answering (``host:port``: with several
        hosts in the URL, the one the pool reached), and ``read-only`` when that server is.
        """
        pool = self._runner.pool
        if pool is None:
            return TierHealth(self.name, "durable", False, 0.0, "closed")
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._runner.timeout), pool.connection() as conn:
                await conn.execute("SELECT 1")
                server = f"{conn.info.host}:{conn.info.port}"
                read_only = reports_read_only(conn)
        except (TimeoutError, PoolTimeout, psycopg.Error, OSError) as exc:
            return TierHealth(self.name, "durable", False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        schema = self._runner.settings.schema
        detail = f"schema={schema} server={server}" + (" read-only" if read_only else "")
        return TierHealth(self.name, "durable", not read_only, ms, detail)

    # -- keys, creds, sessions (see _queries and _listing) ------------------------------------

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """All ids in one query (``id = ANY(%s)``)."""
        return await _queries.get_keys(self._runner, addr, key_type, ids)

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """Fence check, upserts and deletes of every type in one pipelined transaction."""
        await _queries.write_keys(self._runner, addr, writes, fence)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Delete every key row of the session (fence-checked, one transaction)."""
        return await _queries.clear_keys(self._runner, addr, fence)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds row, if any."""
        return await _queries.load_creds(self._runner, addr)

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set on ``version`` inside the transaction that holds the session lock.

        When a connection broke during an earlier attempt, that attempt may have committed:
        a conflict whose stored creds are exactly ours at ``expected + 1`` is that commit.
        """
        return await _queries.save_creds(self._runner, addr, blob, expected_version, fence)

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Fence check, delete the keys, keep the row as the fence's tombstone: one transaction."""
        return await _queries.delete_session(self._runner, addr, fence)

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Keyset pagination: one short query per page, no cursor held open between pages."""
        return _listing.list_sessions(self._runner, namespace)

    def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order; one short query per page."""
        return _listing.iter_key_ids(self._runner, addr)

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregate query."""
        return await _listing.count_keys(self._runner, addr)

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` in the meta table unless set (always with ``replace``); one statement.

        Raises:
            InvalidInputError: ``name`` is one the backend keeps itself (``schema_version``,
                ``store_id``).
        """
        return await _listing.bind_meta(self._runner, name, value, replace)

    # -- fences, outbox batches, leases (see _leases) -----------------------------------------

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (``FencedError`` if it saw a higher one)."""
        await _leases.advance_fence(self._runner, addr, token)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """One pipelined transaction; skipped (False) when ``seq`` was applied already."""
        return await _leases.apply_batch(self._runner, addr, writes, creds, seq=seq, fence=fence)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """One upsert, judged by the server's clock: a new token, or None when held."""
        return await _leases.acquire_lease(self._runner, addr, owner, ttl_ms, floor)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
        return await _leases.renew_lease(self._runner, addr, owner, token, ttl_ms)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        return await _leases.release_lease(self._runner, addr, owner, token)


def from_config(
    config: StoreConfig, role: str, *, on_retry: Callable[[], None] | None = None
) -> PostgresDurable:
    """Build the backend named by ``config.durable`` (PostgreSQL is durable-only).

    Raises:
        ConfigError: ``role`` is not ``durable``, or the URL is invalid.
    """
    if role != "durable":
        raise errors.ConfigError("postgresql:// can only be the durable tier, not the cache")
    settings = parse_postgres_url(config.durable, op_timeout=config.op_timeout)
    return PostgresDurable(settings, op_timeout=config.op_timeout, on_retry=on_retry)


__all__ = ["PgSettings", "PostgresDurable", "from_config", "parse_postgres_url"]
