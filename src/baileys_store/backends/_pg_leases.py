"""PostgreSQL: the fence barrier, outbox batches applied at most once, and leases.

A mixin of :class:`~baileys_store.backends.postgres.PostgresDurable` (kept apart so the backend
module stays readable). Leases expire by the server's clock (``clock_timestamp()``), so clocks
of the application hosts do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors as pgerr

from .._model import CredsRecord, KeyWrite, SessionAddr
from . import _pg_schema as q
from ._pg_run import Conn, PgRunner, pipelined_tx


class PgHost(PgRunner):
    """The mixins' base: :class:`PgRunner`'s ``_run`` and ``_params``, and the statements."""

    _q: q.Queries  # set by PostgresDurable


class PgLeaseMixin(PgHost):
    """``advance_fence``, ``apply_batch`` and the :class:`LeaseBackend` methods."""

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one).

        A session without a row gets a tombstone (a deleted row) holding the token, so a
        stale holder's first write is refused as on an existing session. One statement.
        """
        params = self._params(addr, fence=token)

        async def fn(conn: Conn, _: Any) -> None:
            await conn.execute(self._q.fence, params)

        await self._run(fn, addr, fence=token)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """One pipelined transaction; ``seq_check`` aborts it when ``seq`` was applied already."""
        latest = {(w.type, w.id): w.blob for w in writes}
        ups = [(t, i, b) for (t, i), b in latest.items() if b is not None]
        dels = [(t, i) for (t, i), b in latest.items() if b is None]
        params = self._params(addr, fence=fence, seq=seq)

        async def fn(conn: Conn, _: Any) -> bool:
            try:
                async with pipelined_tx(conn):
                    await conn.execute(self._q.touch_batch, params)
                    if ups:
                        types, ids, blobs = (list(c) for c in zip(*ups, strict=True))
                        await conn.execute(
                            self._q.upsert_keys,
                            self._params(addr, types=types, ids=ids, values=blobs),
                        )
                    if dels:
                        types, ids = (list(c) for c in zip(*dels, strict=True))
                        await conn.execute(
                            self._q.delete_keys, self._params(addr, types=types, ids=ids)
                        )
                    if creds is not None:
                        await conn.execute(
                            self._q.put_creds,
                            self._params(addr, blob=creds.blob, version=creds.version),
                        )
            except pgerr.DatabaseError as exc:
                if exc.sqlstate == q.APPLIED_STATE:
                    return False
                raise
            return True

        return await self._run(fn, addr, fence=fence)

    async def _lease_op(self, addr: SessionAddr, query: Any, **params: Any) -> Any:
        async def fn(conn: Conn, _: Any) -> Any:
            cur = await conn.execute(query, self._params(addr, **params))
            return (await cur.fetchone()) if cur.description else cur.rowcount

        return await self._run(fn, addr)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """One upsert: take the lease if free, expired or ``owner``'s; a new, higher token."""
        row = await self._lease_op(addr, self._q.acquire, owner=owner, ttl=ttl_ms, floor=floor)
        return None if row is None else int(row[0])

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
        n = await self._lease_op(addr, self._q.renew, owner=owner, token=token, ttl=ttl_ms)
        return bool(n == 1)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        n = await self._lease_op(addr, self._q.release, owner=owner, token=token)
        return bool(n == 1)
