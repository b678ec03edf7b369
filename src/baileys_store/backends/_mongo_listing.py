"""MongoDB: list a session's keys by keyset pages on ``_id``; the store's metadata.

A key document's ``_id`` is ``<ns>|<sid>|<type>|<id>`` and every part before the id is free of
``|``, so within a session ``_id`` order keeps each type's keys together (types in ``_id`` order,
which may differ from plain string order), and a page resumes after the last ``_id`` it returned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .._model import SessionAddr
from . import _mongo_schema as s
from ._mongo_core import MongoBase

_PAGE = 1000


class MongoListingMixin(MongoBase):
    """``iter_key_ids`` and ``count_keys`` (the optional KeyListing protocol), ``bind_meta``."""

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session, grouped by type; one short query per page."""
        _, _, keys = self._cols()
        after = ""
        while True:
            filt: dict[str, Any] = {**s.keys_filter(addr), "_id": {"$gt": after}}

            async def page(f: dict[str, Any] = filt) -> list[dict[str, Any]]:
                cursor = keys.find(f, {"type": 1, "id": 1}).sort("_id", 1).limit(_PAGE)
                return await cursor.to_list(length=_PAGE)

            docs = await self._run("list keys", page)
            for doc in docs:
                yield str(doc["type"]), str(doc["id"])
            if len(docs) < _PAGE:
                return
            after = str(docs[-1]["_id"])

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregation."""
        _, _, keys = self._cols()

        async def agg() -> list[dict[str, Any]]:
            pipeline = [
                {"$match": s.keys_filter(addr)},
                {"$group": {"_id": "$type", "n": {"$sum": 1}}},
            ]
            cursor = await keys.aggregate(pipeline)
            return await cursor.to_list(length=None)

        return {str(d["_id"]): int(d["n"]) for d in await self._run("count keys", agg)}

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` in ``bs_meta`` unless set (always with ``replace``); see ``_mongo_schema``.

        Raises:
            InvalidInputError: ``name`` is one the backend keeps itself (``schema_version``,
                ``store_id``).
        """
        client, _, _ = self._cols()
        db = client[self.database]
        result: str = await self._run(
            "bind meta", lambda: s.bind_meta(db, name, value, replace=replace)
        )
        return result
