"""PostgreSQL: list a session's keys (export, rotation, inspect), and the store's metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import errors
from .._model import SessionAddr
from . import _pg_schema as q
from ._pg_leases import PgHost
from ._pg_run import Conn

_PAGE = 1000


class PgListingMixin(PgHost):
    """``iter_key_ids`` and ``count_keys`` (the optional KeyListing protocol), ``bind_meta``."""

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order; one short query per page."""
        last = ("", "")
        while True:
            params = (addr.namespace, addr.session_id, *last, _PAGE)

            async def fn(conn: Conn, _: Any, p: tuple[Any, ...] = params) -> list[Any]:
                cur = await conn.execute(self._q.key_ids_page, p)
                return await cur.fetchall()

            rows = await self._run(fn, addr)
            for key_type, key_id in rows:
                yield str(key_type), str(key_id)
            if len(rows) < _PAGE:
                return
            last = (str(rows[-1][0]), str(rows[-1][1]))

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregate query."""

        async def fn(conn: Conn, _: Any) -> list[Any]:
            cur = await conn.execute(self._q.count_keys, (addr.namespace, addr.session_id))
            return await cur.fetchall()

        return {str(t): int(n) for t, n in await self._run(fn, addr)}

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` in the meta table unless set (always with ``replace``); one statement.

        Raises:
            InvalidInputError: ``name`` is one the backend keeps itself (``schema_version``,
                ``store_id``).
        """
        if name in q.RESERVED_META:
            raise errors.InvalidInputError(f"meta name {name!r} is reserved by the backend")
        params = {"name": name, "value": value, "replace": replace}

        async def fn(conn: Conn, _: Any) -> Any:
            return await (await conn.execute(self._q.bind_meta, params)).fetchone()

        row = await self._run(fn)
        if row is None or not isinstance(row[0], str):
            raise errors.CorruptDataError(f"postgres: meta {name!r} did not read back as text")
        return row[0]
