"""MongoDB: list sessions and a session's keys by keyset pages; the store's metadata.

A key document's ``_id`` is ``<ns>|<sid>|<type>|<id>`` and every part before the id is free of
``|``, so within a session ``_id`` order keeps each type's keys together (types in ``_id`` order,
which may differ from plain string order), and a page resumes after the last ``_id`` it returned.
Sessions are listed in pages on the ``(namespace, session_id)`` index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ... import errors
from ..._model import SessionAddr
from ...results import SessionInfo
from . import _schema as s
from ._core import MongoCore, as_int

Doc = s.Doc
_KEYS_PAGE = 1000
_SESSIONS_PAGE = 500


async def list_sessions(core: MongoCore, namespace: str | None) -> AsyncIterator[SessionInfo]:
    """Keyset pages of 500 on the ``(namespace, session_id)`` index."""
    _, sessions, _ = core.cols()
    last: tuple[str, str] | None = None
    order = [("namespace", 1), ("session_id", 1)]
    fields = {"_id": 0, "namespace": 1, "session_id": 1, "version": 1, "updated_at": 1}
    while True:
        query: Doc = {} if namespace is None else {"namespace": namespace}
        query["deleted"] = {"$ne": True}  # tombstones are not sessions
        if last is not None:
            after = {"session_id": {"$gt": last[1]}}
            query = (
                {**query, **after}
                if namespace is not None
                else {"$or": [{"namespace": {"$gt": last[0]}}, {"namespace": last[0], **after}]}
            )

        async def page(q: Doc = query) -> list[Doc]:
            return await sessions.find(q, fields).sort(order).limit(_SESSIONS_PAGE).to_list()

        docs = await core.run("list sessions", page)
        for d in docs:
            try:
                ns, sid = str(d["namespace"]), str(d["session_id"])
                updated = float(d.get("updated_at", 0.0))
            except (KeyError, TypeError, ValueError):
                raise errors.CorruptDataError("mongodb: malformed session document") from None
            yield SessionInfo(ns, sid, as_int(d.get("version", 0), "creds version"), updated)
        if len(docs) < _SESSIONS_PAGE:
            return
        last = (str(docs[-1]["namespace"]), str(docs[-1]["session_id"]))


async def iter_key_ids(core: MongoCore, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
    """Every ``(type, id)`` of the session, grouped by type; one short query per page."""
    _, _, keys = core.cols()
    after = ""
    while True:
        filt: dict[str, Any] = {**s.keys_filter(addr), "_id": {"$gt": after}}

        async def page(f: dict[str, Any] = filt) -> list[dict[str, Any]]:
            cursor = keys.find(f, {"type": 1, "id": 1}).sort("_id", 1).limit(_KEYS_PAGE)
            return await cursor.to_list(length=_KEYS_PAGE)

        docs = await core.run("list keys", page)
        for doc in docs:
            yield str(doc["type"]), str(doc["id"])
        if len(docs) < _KEYS_PAGE:
            return
        after = str(docs[-1]["_id"])


async def count_keys(core: MongoCore, addr: SessionAddr) -> dict[str, int]:
    """``{type: count}`` of the session's keys, one aggregation."""
    _, _, keys = core.cols()

    async def agg() -> list[dict[str, Any]]:
        pipeline = [
            {"$match": s.keys_filter(addr)},
            {"$group": {"_id": "$type", "n": {"$sum": 1}}},
        ]
        cursor = await keys.aggregate(pipeline)
        return await cursor.to_list(length=None)

    return {str(d["_id"]): int(d["n"]) for d in await core.run("count keys", agg)}


async def bind_meta(core: MongoCore, name: str, value: str, *, replace: bool) -> str:
    """Set ``name`` in ``bs_meta`` unless set (always with ``replace``); see ``_schema``."""
    db = core.db()
    result: str = await core.run("bind meta", lambda: s.bind_meta(db, name, value, replace=replace))
    return result


__all__ = ["bind_meta", "count_keys", "iter_key_ids", "list_sessions"]
