"""PostgreSQL: the key and creds operations, each one statement or one pipelined transaction.

Plain functions of a :class:`~._run.PgRunner`; :class:`~baileys_store.backends.postgres.
PostgresDurable` documents what each one promises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors as pgerr
from psycopg import sql

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr, last_writes
from . import _schema as q
from ._run import Attempts, Conn, PgRunner, as_blob, as_int, as_text, params, pipelined_tx

Statement = tuple[sql.Composed, dict[str, Any]]


def key_statements(run: PgRunner, addr: SessionAddr, writes: Sequence[KeyWrite]) -> list[Statement]:
    """The upsert and the delete applying ``writes`` (the last write of a key wins).

    Duplicates must go: ``ON CONFLICT`` may touch a row only once per statement.
    """
    net = last_writes(writes)
    ups = [w for w in net if w.blob is not None]
    dels = [w for w in net if w.blob is None]
    out: list[Statement] = []
    if ups:
        types, ids, blobs = (list(col) for col in zip(*ups, strict=True))
        first = types[0]
        if all(t == first for t in types):
            one = params(addr, type=first, ids=ids, values=blobs)
            out.append((run.sql.upsert_keys_one_type, one))
        else:
            out.append((run.sql.upsert_keys, params(addr, types=types, ids=ids, values=blobs)))
    if dels:
        types, ids = [w.type for w in dels], [w.id for w in dels]
        out.append((run.sql.delete_keys, params(addr, types=types, ids=ids)))
    return out


async def get_keys(
    run: PgRunner, addr: SessionAddr, key_type: str, ids: Sequence[str]
) -> dict[str, bytes]:
    """All ids in one query (``id = ANY(%s)``; one id: a scalar comparison)."""
    if not ids:
        return {}
    one = len(ids) == 1
    query = run.sql.get_key if one else run.sql.get_keys
    args = (addr.namespace, addr.session_id, key_type, ids[0] if one else list(ids))

    async def fn(conn: Conn, _: Attempts) -> list[tuple[Any, ...]]:
        cur = await conn.cursor(binary=True).execute(query, args)
        return await cur.fetchall()

    rows = await run.run(fn, addr)
    return {as_text(i): as_blob(v) for i, v in rows}


async def write_keys(
    run: PgRunner, addr: SessionAddr, writes: Sequence[KeyWrite], fence: int | None
) -> None:
    """Fence check, upserts and deletes of every type in one pipelined transaction."""
    touch = params(addr, fence=fence)
    statements = key_statements(run, addr, writes)

    async def fn(conn: Conn, _: Attempts) -> None:
        async with pipelined_tx(conn):
            await conn.execute(run.sql.touch, touch)
            for query, args in statements:
                await conn.execute(query, args)

    await run.run(fn, addr, fence=fence)


async def clear_keys(run: PgRunner, addr: SessionAddr, fence: int | None) -> int:
    """Delete every key row of the session (fence-checked, one transaction)."""

    async def fn(conn: Conn, _: Attempts) -> int:
        async with pipelined_tx(conn):
            await conn.execute(run.sql.touch, params(addr, fence=fence))
            cur = await conn.execute(run.sql.clear_keys, params(addr))
        return max(cur.rowcount, 0)

    return await run.run(fn, addr, fence=fence)


async def load_creds(run: PgRunner, addr: SessionAddr) -> CredsRecord | None:
    """The creds row, if any."""

    async def fn(conn: Conn, _: Attempts) -> tuple[Any, ...] | None:
        cur = conn.cursor(binary=True)
        await cur.execute(run.sql.load_creds, (addr.namespace, addr.session_id))
        return await cur.fetchone()

    row = await run.run(fn, addr)
    return CredsRecord(as_blob(row[0]), as_int(row[1])) if row else None


async def save_creds(
    run: PgRunner, addr: SessionAddr, blob: bytes, expected: int | None, fence: int | None
) -> int:
    """Compare-and-set on ``version`` inside the transaction that holds the session lock.

    When a connection broke during an earlier attempt, that attempt may have committed:
    a conflict whose stored creds are exactly ours at ``expected + 1`` is that commit.
    """
    args = params(addr, fence=fence, blob=blob, expected=expected)

    async def fn(conn: Conn, attempts: Attempts) -> int:
        try:
            async with pipelined_tx(conn):
                await conn.execute(run.sql.touch, args)
                cur = await conn.execute(run.sql.save_creds, args)
        except pgerr.DatabaseError as exc:
            if not (attempts.connection_lost and exc.sqlstate == q.CONFLICT_STATE):
                raise
            cur = await conn.cursor(binary=True).execute(
                run.sql.load_creds, (addr.namespace, addr.session_id)
            )
            row = await cur.fetchone()
            if row is None or bytes(row[0]) != blob or row[1] != (expected or 0) + 1:
                raise
            return as_int(row[1])
        row = await cur.fetchone()
        if row is None:
            raise errors.UnavailableError(f"postgres: session {addr} vanished during save")
        return as_int(row[0])

    return await run.run(fn, addr, fence=fence, expected=expected)


async def delete_session(run: PgRunner, addr: SessionAddr, fence: int | None) -> bool:
    """Fence check, delete the keys, keep the row as the fence's tombstone: one transaction.

    The fence statement locks (or inserts) the row first, so no writer of the session runs
    between the check and the deletes. A tombstone whose fence is 0 (a store without leases)
    carries nothing and is dropped.
    """
    args = params(addr, fence=fence)

    async def fn(conn: Conn, _: Attempts) -> bool:
        async with pipelined_tx(conn):
            await conn.execute(run.sql.fence, args)
            keys = await conn.execute(run.sql.clear_keys, args)
            rows = await conn.execute(run.sql.mark_deleted, args)
            await conn.execute(run.sql.drop_bare_tombstone, args)
        return keys.rowcount > 0 or rows.rowcount > 0

    return await run.run(fn, addr, fence=fence)
