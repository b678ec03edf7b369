"""PostgreSQL tier, continued: running a call on the pool, transactions, error mapping.

Split from :mod:`.postgres` to keep modules small (and so the mixins import ``pipelined_tx``
without a cycle). :class:`PgRunner` is a base of
:class:`~baileys_store.backends.postgres.PostgresDurable`, which supplies the pool and settings.
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
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .. import errors
from .._model import SessionAddr
from . import _pg_schema as q
from ._fences import check_fence, check_version
from ._pg_url import PgSettings

T = TypeVar("T")
Conn = AsyncConnection[Any]
_INTRANS, _INERROR = psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR
# SQLSTATEs worth another attempt: the transaction was rolled back and nothing was applied, or
# the connection died (admin/crash shutdown, "cannot connect now" during a restart).
_TRANSIENT_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})


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
    return transient(exc) and getattr(exc, "sqlstate", None) not in ("40001", "40P01")


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


class PgRunner:
    """Runs calls on the pool with bounded retries and the op timeout; maps driver errors."""

    on_retry: Callable[[], None]
    _pool: AsyncConnectionPool[Conn] | None
    _s: PgSettings
    _timeout: float

    async def _run(
        self,
        fn: Callable[[Conn, Attempts], Awaitable[T]],
        addr: SessionAddr | None = None,
        *,
        fence: int | None = None,
        expected: int | None = None,
    ) -> T:
        """Run ``fn`` on a pooled connection with bounded retries and the op timeout."""
        pool = self._pool
        if pool is None:
            raise errors.StoreClosedError("postgres backend is not open")
        attempts = Attempts()

        async def after_failure(exc: BaseException | None) -> None:
            if exc is not None and is_connection_error(exc):
                attempts.connection_lost = True
                await pool.check()  # drop every dead idle connection, not one per attempt

        async def before_sleep(state: RetryCallState) -> None:
            self.on_retry()
            await after_failure(state.outcome.exception() if state.outcome else None)

        async def once() -> T:
            async with pool.connection() as conn:
                return await fn(conn, attempts)

        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await once()  # the common case skips the retry machinery
                except psycopg.Error as exc:
                    if not (self._s.retries and transient(exc)):
                        raise
                    await after_failure(exc)
                retrying = AsyncRetrying(
                    wait=wait_random_exponential(multiplier=0.02, max=0.5),
                    stop=stop_after_attempt(self._s.retries),
                    retry=retry_if_exception(transient),
                    before_sleep=before_sleep,
                    reraise=True,
                )
                return await retrying(once)
        except TimeoutError:
            raise errors.UnavailableError(
                f"postgres did not answer within {self._timeout}s"
            ) from None
        except PoolTimeout:
            raise errors.UnavailableError(
                f"postgres: no connection within {self._s.timeout}s (server unreachable, "
                f"or all {self._s.max_size} pooled connections busy)"
            ) from None
        except psycopg.Error as exc:
            raise self._map(exc, addr, fence, expected) from None

    def _map(
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
        text = self._s.scrub(" ".join((exc.diag.message_primary or str(exc)).split())[:300])
        kind = type(exc).__name__
        if state in ("XX001", "XX002"):
            return errors.CorruptDataError(f"postgres reports corrupt data ({state}): {text}")
        return errors.UnavailableError(f"postgres: {kind}{f' [{state}]' if state else ''}: {text}")

    @staticmethod
    def _params(addr: SessionAddr, **more: Any) -> dict[str, Any]:
        return {"ns": addr.namespace, "sid": addr.session_id, **more}


def as_blob(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} blob, not bytes")


def as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} name, not text")


def as_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise errors.CorruptDataError(f"postgres returned a {type(value).__name__} version")
