"""PostgreSQL: the pool, running a call on it (op timeout, retries), transactions, error mapping.

:class:`PgRunner` owns the connection pool; the backend and the query functions of the other
modules run every call through :meth:`PgRunner.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg import errors as pgerr
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ... import errors
from ..._model import SessionAddr
from ...resilience import RetryPolicy, retrying
from .._fences import check_fence, check_version
from . import _schema as q
from ._migrations import migrate
from ._url import PgSettings

T = TypeVar("T")
Conn = AsyncConnection[Any]
_INTRANS, _INERROR = psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR
# SQLSTATEs worth another attempt: the transaction was rolled back and nothing was applied, or
# the connection died (admin/crash shutdown, "cannot connect now" during a restart), or the
# server is read-only (25006: a demoted primary or a standby; the connection is dropped and the
# next one goes through target_session_attrs to the new primary).
READ_ONLY_STATE = "25006"
_ROLLED_BACK = frozenset({"40001", "40P01", READ_ONLY_STATE})
_TRANSIENT_STATES = _ROLLED_BACK | {"57P01", "57P02", "57P03"}


def transient(exc: BaseException) -> bool:
    """Worth retrying: a rolled-back transaction or a dead connection, never a timeout.

    Not a pool timeout either: the pool already waited its ``timeout`` for a connection.
    """
    if isinstance(exc, (pgerr.QueryCanceled, PoolTimeout)) or not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate or ""
    if state in _TRANSIENT_STATES or state.startswith("08"):
        return True
    # No SQLSTATE: the socket broke ("server closed the connection unexpectedly").
    return not state and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def is_connection_error(exc: BaseException) -> bool:
    """A broken connection (the write may have been applied), not a rolled-back transaction."""
    return transient(exc) and getattr(exc, "sqlstate", None) not in _ROLLED_BACK


def reports_read_only(conn: Conn) -> bool:
    """The server told this connection it is read-only or a standby (no round trip).

    PostgreSQL 14+ reports both settings to the client whenever they change
    (``ParameterStatus``); older servers report neither, and then only a 25006 tells.
    """
    status = conn.pgconn.parameter_status
    return status(b"default_transaction_read_only") == b"on" or status(b"in_hot_standby") == b"on"


@asynccontextmanager
async def pipelined_tx(conn: Conn) -> AsyncIterator[None]:
    """One transaction sent as one pipeline (a single round trip when nothing fails).

    A statement that fails aborts the rest of the pipeline, ``COMMIT`` included, so nothing of
    the transaction is applied; the aborted transaction is then rolled back. Plain ``BEGIN`` /
    ``COMMIT`` rather than ``conn.transaction()``, whose nested pipeline logs a warning for the
    statements the server skipped: a fenced write or a lost CAS race is not worth a warning.
    """
    failure: psycopg.Error | None = None
    try:
        async with conn.pipeline():
            try:
                await conn.execute("BEGIN")
                yield
                await conn.execute("COMMIT")
            except psycopg.Error as exc:  # an error the server already reported
                failure = exc
        # Leaving the pipeline sends the one Sync and raises the first error, if any.
    except psycopg.Error as exc:
        failure = failure or exc
    finally:
        # Also after a cancellation: never hand an open transaction back to the pool.
        if not conn.broken and conn.info.transaction_status in (_INTRANS, _INERROR):
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
    if failure is not None:
        raise failure


@dataclass
class Attempts:
    """Per-call record of whether a connection broke (the write may have been applied)."""

    connection_lost: bool = False


def params(addr: SessionAddr, **more: Any) -> dict[str, Any]:
    """The named parameters of a statement on one session (``ns``, ``sid`` and ``more``)."""
    return {"ns": addr.namespace, "sid": addr.session_id, **more}


class PgRunner:
    """Owns the pool; runs calls on it with bounded retries and the op timeout; maps errors.

    Args:
        settings: Parsed URL.
        op_timeout: Seconds one operation may take, retries included.
        on_retry: Called before each retry (the store counts them).
    """

    def __init__(
        self, settings: PgSettings, *, op_timeout: float, on_retry: Callable[[], None]
    ) -> None:
        self.settings = settings
        self.timeout = op_timeout
        self.sql = q.Queries.for_schema(settings.schema)
        self.pool: AsyncConnectionPool[Conn] | None = None
        self._policy = RetryPolicy(
            attempts=settings.retries + 1,
            transient=transient,
            on_retry=on_retry,
            before_retry=self._purge,
        )

    async def open(self) -> str:
        """Migrate the schema on a direct connection, then open the pool; the store id.

        The direct connection fails fast with the server's own reason (wrong password, no
        such database), where a pool would only time out.
        """
        s = self.settings
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": s.prepare_threshold,
            **s.connect_kwargs,
        }
        try:
            async with asyncio.timeout(self.timeout):
                conn = await AsyncConnection.connect(s.conninfo, **kwargs)
                async with conn:
                    store_id = await migrate(conn, s.schema, self.sql)
        except TimeoutError:
            raise errors.UnavailableError(
                f"postgres did not answer within {self.timeout}s while opening"
            ) from None
        except psycopg.Error as exc:
            raise self.map(exc, None, None, None) from None
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            s.conninfo,
            kwargs=kwargs,
            min_size=s.min_size,
            max_size=s.max_size,
            timeout=s.timeout,
            # psycopg_pool's default (300 s) backs off up to minutes after an outage, failing
            # calls long after the server is back; a short one reconnects on the next request.
            reconnect_timeout=max(3.0, s.timeout),
            open=False,
            name="baileys-store",
        )
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, PoolTimeout):
                raise errors.UnavailableError(
                    f"postgres: pool not ready within {self.timeout}s"
                ) from None
            raise
        self.pool = pool
        return store_id

    async def close(self) -> None:
        """Close the pool; idempotent."""
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    async def _purge(self, exc: BaseException) -> None:
        if is_connection_error(exc) and self.pool is not None:
            await self.pool.check()  # drop every dead idle connection, not one per attempt

    async def _drop_read_only(self, conn: Conn) -> None:
        """Close ``conn`` (on a read-only server) and every idle connection of the pool.

        The idle ones most likely point at the same demoted server: reused, they would fail
        each write again, and their reads could miss what the new primary has acknowledged.
        ``drain`` also discards the connections in use when they come back; the pool's new
        connections go through ``target_session_attrs`` again.
        """
        if not conn.closed:
            await conn.close()
        if self.pool is not None:
            await self.pool.drain()

    async def run(
        self,
        fn: Callable[[Conn, Attempts], Awaitable[T]],
        addr: SessionAddr | None = None,
        *,
        fence: int | None = None,
        expected: int | None = None,
    ) -> T:
        """Run ``fn`` on a pooled connection with bounded retries and the op timeout.

        ``addr``, ``fence`` and ``expected`` turn a fence or version error of the server into
        :class:`~baileys_store.errors.FencedError` / ``ConflictError``.
        """
        pool = self.pool
        if pool is None:
            raise errors.StoreClosedError("postgres backend is not open")
        attempts = Attempts()
        primary_only = self.settings.wants_primary

        async def once() -> T:
            try:
                async with pool.connection() as conn:
                    try:
                        return await fn(conn, attempts)
                    except psycopg.Error as exc:
                        if exc.sqlstate == READ_ONLY_STATE:
                            await self._drop_read_only(conn)
                        raise
                    finally:
                        # Free when the server reports nothing: two lookups of libpq's state.
                        if primary_only and not conn.closed and reports_read_only(conn):
                            await self._drop_read_only(conn)
            except psycopg.Error as exc:
                if is_connection_error(exc):
                    attempts.connection_lost = True  # seen by the next attempt
                raise

        try:
            async with asyncio.timeout(self.timeout):
                return await retrying(self._policy, once)
        except TimeoutError:
            raise errors.UnavailableError(
                f"postgres did not answer within {self.timeout}s"
            ) from None
        except PoolTimeout:
            raise errors.UnavailableError(
                f"postgres: no connection within {self.settings.timeout}s (server unreachable, "
                f"or all {self.settings.max_size} pooled connections busy)"
            ) from None
        except psycopg.Error as exc:
            raise self.map(exc, addr, fence, expected) from None

    def map(
        self, exc: psycopg.Error, addr: SessionAddr | None, fence: int | None, expected: int | None
    ) -> errors.StoreError:
        """Turn a driver error into our typed error (secret-free: primary message only)."""
        state = exc.sqlstate or ""
        detail = exc.diag.message_detail or ""
        if addr is not None and state in (q.FENCED_STATE, q.CONFLICT_STATE) and detail.isdigit():
            try:
                if state == q.FENCED_STATE:
                    check_fence(addr, int(detail), fence)
                else:
                    check_version(addr, int(detail), expected)
            except errors.StoreError as mapped:
                return mapped
        text = self.settings.scrub(" ".join((exc.diag.message_primary or str(exc)).split())[:300])
        kind = type(exc).__name__
        if state in ("XX001", "XX002"):
            return errors.CorruptDataError(f"postgres reports corrupt data ({state}): {text}")
        return errors.UnavailableError(f"postgres: {kind}{f' [{state}]' if state else ''}: {text}")


def as_blob(value: object) -> bytes:
    """A ``bytea`` value as ``bytes`` (CorruptDataError for anything else)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} blob, not bytes")


def as_text(value: object) -> str:
    """A ``text`` value (CorruptDataError for anything else)."""
    if isinstance(value, str):
        return value
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} name, not text")


def as_int(value: object) -> int:
    """A ``bigint`` value (CorruptDataError for anything else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} version")
