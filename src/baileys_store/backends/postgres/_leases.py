"""PostgreSQL: the fence barrier, outbox batches applied at most once, and leases.

Plain functions of a :class:`~._run.PgRunner`. Leases expire by the server's clock
(``clock_timestamp()``), so clocks of the application hosts do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors as pgerr
from psycopg import sql

from ..._model import CredsRecord, KeyWrite, SessionAddr
from . import _schema as q
from ._queries import key_statements
from ._run import Attempts, Conn, PgRunner, params, pipelined_tx


async def advance_fence(run: PgRunner, addr: SessionAddr, token: int) -> None:
    """Record ``token`` as the session's fence (FencedError if it saw a higher one).

    A session without a row gets a tombstone (a deleted row) holding the token, so a stale
    holder's first write is refused as on an existing session. One statement.
    """
    args = params(addr, fence=token)

    async def fn(conn: Conn, _: Attempts) -> None:
        await conn.execute(run.sql.fence, args)

    await run.run(fn, addr, fence=token)


async def apply_batch(
    run: PgRunner,
    addr: SessionAddr,
    writes: Sequence[KeyWrite],
    creds: CredsRecord | None,
    *,
    seq: int,
    fence: int | None,
) -> bool:
    """One pipelined transaction; ``seq_check`` aborts it when ``seq`` was applied already."""
    touch = params(addr, fence=fence, seq=seq)
    statements = key_statements(run, addr, writes)
    if creds is not None:
        put = params(addr, blob=creds.blob, version=creds.version)
        statements.append((run.sql.put_creds, put))

    async def fn(conn: Conn, _: Attempts) -> bool:
        try:
            async with pipelined_tx(conn):
                await conn.execute(run.sql.touch_batch, touch)
                for query, args in statements:
                    await conn.execute(query, args)
        except pgerr.DatabaseError as exc:
            if exc.sqlstate == q.APPLIED_STATE:
                return False
            raise
        return True

    return await run.run(fn, addr, fence=fence)


async def _lease_op(run: PgRunner, addr: SessionAddr, query: sql.Composed, **more: Any) -> Any:
    async def fn(conn: Conn, _: Attempts) -> Any:
        cur = await conn.execute(query, params(addr, **more))
        return (await cur.fetchone()) if cur.description else cur.rowcount

    return await run.run(fn, addr)


async def acquire_lease(
    run: PgRunner, addr: SessionAddr, owner: str, ttl_ms: int, floor: int
) -> int | None:
    """One upsert: take the lease if free, expired or ``owner``'s; a new, higher token."""
    row = await _lease_op(run, addr, run.sql.acquire, owner=owner, ttl=ttl_ms, floor=floor)
    return None if row is None else int(row[0])


async def renew_lease(
    run: PgRunner, addr: SessionAddr, owner: str, token: int, ttl_ms: int
) -> bool:
    """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
    n = await _lease_op(run, addr, run.sql.renew, owner=owner, token=token, ttl=ttl_ms)
    return bool(n == 1)


async def release_lease(run: PgRunner, addr: SessionAddr, owner: str, token: int) -> bool:
    """Drop the lease if ``owner`` still holds it with ``token``."""
    n = await _lease_op(run, addr, run.sql.release, owner=owner, token=token)
    return bool(n == 1)
