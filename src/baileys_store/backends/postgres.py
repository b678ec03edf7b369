"""PostgreSQL durable tier: psycopg 3 (async) behind a ``psycopg_pool`` connection pool.

Every write is one transaction sent as one pipeline: ``BEGIN``, the session upsert that checks
the fence (and locks the row), the key statements, ``COMMIT`` — a single round trip. A failed
check raises inside the server, which aborts the rest of the pipeline, so nothing is applied.
Reads use autocommit connections: one statement, one round trip, ``id = ANY(array)``.

Connections are autocommit with prepared statements off by default (``prepare_threshold=None``)
so transaction-mode poolers such as pgbouncer work; ``prepare_threshold=N`` turns them on.

Timeouts are client-side: ``op_timeout`` bounds each operation, retries included, and on expiry
psycopg cancels the running query on the server. For a server-side bound as well, pass libpq's
``options=-c%20statement_timeout%3D5000`` in the URL (libpq parameters are passed on as given).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg import errors as pgerr
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .. import errors
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..results import SessionInfo, TierHealth
from . import _pg_schema as q
from ._pg_leases import PgLeaseMixin
from ._pg_listing import PgListingMixin
from ._pg_run import Attempts, Conn, as_blob, as_int, as_text, pipelined_tx
from ._pg_url import PgSettings, parse_postgres_url

if TYPE_CHECKING:
    from .._config import StoreConfig

T = TypeVar("T")
_PAGE = 500


class PostgresDurable(PgListingMixin, PgLeaseMixin):
    """Durable tier in PostgreSQL.

    Args:
        settings: Parsed URL (see :func:`parse_postgres_url`).
        op_timeout: Seconds one operation may take, retries included.
    """

    name = "postgres"

    def __init__(self, settings: PgSettings, *, op_timeout: float) -> None:
        self.on_retry: Callable[[], None] = lambda: None  # the store counts retries here
        self._s = settings
        self._timeout = op_timeout
        self._q = q.Queries.for_schema(settings.schema)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self.store_id = ""  # known once open (see base.DurableBackend)

    async def open(self) -> None:
        """Migrate the schema on a direct connection, then open the pool.

        The direct connection fails fast with the server's own reason (wrong password, no
        such database), where a pool would only time out. Opening an open backend is a no-op.
        """
        if self._pool is not None:
            return
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": self._s.prepare_threshold,
            **self._s.connect_kwargs,
        }
        try:
            async with asyncio.timeout(self._timeout):
                conn = await AsyncConnection.connect(self._s.conninfo, **kwargs)
                async with conn:
                    await self._migrate(conn)
        except TimeoutError:
            raise errors.UnavailableError(
                f"postgres did not answer within {self._timeout}s while opening"
            ) from None
        except psycopg.Error as exc:
            raise self._map(exc, None, None, None) from None
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._s.conninfo,
            kwargs=kwargs,
            min_size=self._s.min_size,
            max_size=self._s.max_size,
            timeout=self._s.timeout,
            # psycopg_pool's default (300 s) backs off up to minutes after an outage, failing
            # calls long after the server is back; a short one reconnects on the next request.
            reconnect_timeout=max(3.0, self._s.timeout),
            open=False,
            name="baileys-store",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, PoolTimeout):
                raise errors.UnavailableError(
                    f"postgres: pool not ready within {self._timeout}s"
                ) from None
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool; idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _migrate(self, conn: Conn) -> None:
        """Create or upgrade the schema; serialized across processes by an advisory lock.

        An up-to-date schema needs no DDL (nor the privilege to run it): only a lookup.
        """
        async with conn.transaction():
            key = q.advisory_key(self._s.schema)
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (q.ADVISORY_CLASS, key))
            cur = await conn.execute(q.META_EXISTS, (self._s.schema,))
            current = 0
            if await cur.fetchone():
                row = await (await conn.execute(self._q.get_meta)).fetchone()
                current = int(row[0]) if row else 0
            if current > q.SCHEMA_VERSION:
                raise errors.UnavailableError(
                    f"postgres schema {self._s.schema!r} is at version {current}, newer than "
                    f"this baileys-store ({q.SCHEMA_VERSION})"
                )
            if current < q.SCHEMA_VERSION:
                # prepare=False: scripts of several statements cannot be prepared.
                await conn.execute(self._q.meta, prepare=False)
                for version in range(current + 1, q.SCHEMA_VERSION + 1):
                    await conn.execute(self._q.migrations[version], prepare=False)
                await conn.execute(self._q.set_meta, (str(q.SCHEMA_VERSION),))
            # Who this database is, so a Redis cache can refuse a second database (store_id).
            await conn.execute(self._q.init_store_id, (secrets.token_hex(8),))
            row = await (await conn.execute(self._q.get_store_id)).fetchone()
            self.store_id = str(row[0]) if row else ""

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """All ids in one query (``id = ANY(%s)``)."""
        if not ids:
            return {}
        one = len(ids) == 1
        query = self._q.get_key if one else self._q.get_keys
        params = (addr.namespace, addr.session_id, key_type, ids[0] if one else list(ids))

        async def fn(conn: Conn, _: Attempts) -> list[tuple[Any, ...]]:
            cur = await conn.cursor(binary=True).execute(query, params)
            return await cur.fetchall()

        rows = await self._run(fn, addr)
        return {as_text(i): as_blob(v) for i, v in rows}

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """Fence check, upserts and deletes of every type in one pipelined transaction."""
        latest = {(w.type, w.id): w.blob for w in writes}  # last write of a key wins
        ups = [(t, i, b) for (t, i), b in latest.items() if b is not None]
        dels = [(t, i) for (t, i), b in latest.items() if b is None]

        async def fn(conn: Conn, _: Attempts) -> None:
            async with pipelined_tx(conn):
                await conn.execute(self._q.touch, self._params(addr, fence=fence))
                if ups:
                    types, ids, blobs = (list(col) for col in zip(*ups, strict=True))
                    await conn.execute(
                        self._q.upsert_keys, self._params(addr, types=types, ids=ids, values=blobs)
                    )
                if dels:
                    types, ids = (list(col) for col in zip(*dels, strict=True))
                    params = self._params(addr, types=types, ids=ids)
                    await conn.execute(self._q.delete_keys, params)

        await self._run(fn, addr, fence=fence)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Delete every key row of the session (fence-checked, one transaction)."""

        async def fn(conn: Conn, _: Attempts) -> int:
            async with pipelined_tx(conn):
                await conn.execute(self._q.touch, self._params(addr, fence=fence))
                cur = await conn.execute(self._q.clear_keys, self._params(addr))
            return max(cur.rowcount, 0)

        return await self._run(fn, addr, fence=fence)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds row, if any."""

        async def fn(conn: Conn, _: Attempts) -> tuple[Any, ...] | None:
            cur = conn.cursor(binary=True)
            await cur.execute(self._q.load_creds, (addr.namespace, addr.session_id))
            return await cur.fetchone()

        row = await self._run(fn, addr)
        return CredsRecord(as_blob(row[0]), as_int(row[1])) if row else None

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
        params = self._params(addr, fence=fence, blob=blob, expected=expected_version)

        async def fn(conn: Conn, attempts: Attempts) -> int:
            try:
                async with pipelined_tx(conn):
                    await conn.execute(self._q.touch, params)
                    cur = await conn.execute(self._q.save_creds, params)
            except pgerr.DatabaseError as exc:
                if not (attempts.connection_lost and exc.sqlstate == q.CONFLICT_STATE):
                    raise
                cur = await conn.cursor(binary=True).execute(
                    self._q.load_creds, (addr.namespace, addr.session_id)
                )
                row = await cur.fetchone()
                if row is None or bytes(row[0]) != blob or row[1] != (expected_version or 0) + 1:
                    raise
                return as_int(row[1])
            row = await cur.fetchone()
            if row is None:
                raise errors.UnavailableError(f"postgres: session {addr} vanished during save")
            return as_int(row[0])

        return await self._run(fn, addr, fence=fence, expected=expected_version)

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Fence check, delete the keys, keep the row as the fence's tombstone: one transaction.

        The fence statement locks (or inserts) the row first, so no writer of the session
        runs between the check and the deletes. A tombstone whose fence is 0 (a store without
        leases) carries nothing and is dropped.
        """
        params = self._params(addr, fence=fence)

        async def fn(conn: Conn, _: Attempts) -> bool:
            async with pipelined_tx(conn):
                await conn.execute(self._q.fence, params)
                keys = await conn.execute(self._q.clear_keys, params)
                rows = await conn.execute(self._q.mark_deleted, params)
                await conn.execute(self._q.drop_bare_tombstone, params)
            return keys.rowcount > 0 or rows.rowcount > 0

        return await self._run(fn, addr, fence=fence)

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Keyset pagination: one short query per page, no cursor held open between pages."""
        last = (namespace or "", "")
        while True:
            params: tuple[Any, ...]
            if namespace is None:
                query, params = self._q.list_all, (*last, _PAGE)
            else:
                query, params = self._q.list_namespace, (*last, namespace, _PAGE)

            async def fn(conn: Conn, _: Attempts, qq: Any = query, p: Any = params) -> Any:
                return await (await conn.execute(qq, p)).fetchall()

            rows: list[tuple[Any, ...]] = await self._run(fn)
            for ns, sid, version, updated in rows:
                yield SessionInfo(as_text(ns), as_text(sid), as_int(version), float(updated))
            if len(rows) < _PAGE:
                return
            last = (rows[-1][0], rows[-1][1])

    async def check(self) -> TierHealth:
        """``SELECT 1`` on a pooled connection; never raises for an outage."""
        pool = self._pool
        if pool is None:
            return TierHealth(self.name, "durable", False, 0.0, "closed")
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout), pool.connection() as conn:
                await conn.execute("SELECT 1")
        except (TimeoutError, PoolTimeout, psycopg.Error, OSError) as exc:
            return TierHealth(self.name, "durable", False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        return TierHealth(self.name, "durable", True, ms, f"schema={self._s.schema}")


def from_config(config: StoreConfig, role: str) -> PostgresDurable:
    """Build the backend named by ``config.durable`` (PostgreSQL is durable-only)."""
    if role != "durable":
        raise errors.ConfigError("postgresql:// can only be the durable tier, not the cache")
    settings = parse_postgres_url(config.durable, op_timeout=config.op_timeout)
    return PostgresDurable(settings, op_timeout=config.op_timeout)


__all__ = ["PgSettings", "PostgresDurable", "from_config", "parse_postgres_url"]
