"""MongoDB layout: collection names, document ids, indexes and the schema version.

``bs_sessions``: one document per session::

    {_id: "<namespace>|<session_id>", namespace, session_id,
     creds: BinData (absent until saved), version: int, fence: int, created_at, updated_at}

A deleted session (or one fenced before its first write) stays as a *tombstone* (schema v2):
``{_id, namespace, session_id, fence, version: 0, deleted: true, ...}``, no creds. It keeps the
fence where every fenced write already checks it (the session document's conditional upsert),
so a stale lease holder cannot resurrect the session; listings skip it, and a write that passes
the fence check revives it (``$unset: deleted``).

``bs_keys``: one document per key::

    {_id: "<namespace>|<session_id>|<type>|<id>", namespace, session_id, type, id, value: BinData}

The ``_id`` strings are built by one function each, the same way every time. ``|`` cannot occur
in a namespace, session id or key type (see ``_model``), so the first three ``|`` are always
separators and the id, which may contain anything printable, is the unambiguous remainder.
Ids and types are only ever values, never field names (JIDs contain ``.``, ``@``, ``:``).

Every filter also carries ``namespace`` and ``session_id`` equalities: redundant with ``_id``
on one server, but it makes each operation target one shard when both collections are sharded
on ``{namespace: 1, session_id: "hashed"}`` (upserts on a sharded collection need the shard key
in the filter). No TTL index, ever: expiring auth state is how identities get lost.
"""

from __future__ import annotations

import secrets
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from ..._model import SessionAddr
from ...errors import CorruptDataError, InvalidInputError, UnavailableError

SCHEMA_VERSION = 2  # 2: fence tombstones (an older release would list and resurrect them)
SESSIONS = "bs_sessions"
KEYS = "bs_keys"
META = "bs_meta"
RESERVED_META = frozenset({"schema_version", "store_id"})  # bind_meta may not take these
_SEP = "|"

Doc = dict[str, Any]


def _part(value: str, what: str) -> str:
    if _SEP in value:
        raise InvalidInputError(f"{what} must not contain {_SEP!r}")
    return value


def session_doc_id(addr: SessionAddr) -> str:
    """``_id`` of the session document."""
    return f"{_part(addr.namespace, 'namespace')}{_SEP}{_part(addr.session_id, 'session id')}"


def key_doc_id(addr: SessionAddr, key_type: str, key_id: str) -> str:
    """``_id`` of one key document."""
    return f"{session_doc_id(addr)}{_SEP}{_part(key_type, 'key type')}{_SEP}{key_id}"


def session_filter(addr: SessionAddr) -> Doc:
    """Filter matching the session document (shard key included)."""
    return {"_id": session_doc_id(addr), "namespace": addr.namespace, "session_id": addr.session_id}


def keys_filter(addr: SessionAddr) -> Doc:
    """Filter matching every key document of the session (served by ``bs_keys_session``)."""
    return {"namespace": addr.namespace, "session_id": addr.session_id}


async def store_id(db: AsyncDatabase[Doc]) -> str:
    """The database's id (made once, kept): a Redis cache refuses a second database."""
    doc = await db[META].find_one_and_update(
        {"_id": "store_id"},
        {"$setOnInsert": {"value": secrets.token_hex(8)}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return str(doc["value"]) if doc else ""


async def ensure_schema(db: AsyncDatabase[Doc]) -> None:
    """Create the indexes and record the schema version; safe to run on every open.

    ``create_index`` with an existing name and spec is a no-op, and the version is written with
    ``$setOnInsert``, so concurrent opens from several processes agree. An older version is
    raised in place (v1 -> v2 changes no document: a session without ``deleted`` is live).

    Raises:
        UnavailableError: the database was written by a newer baileys-store.
    """
    order = [("namespace", ASCENDING), ("session_id", ASCENDING)]
    await db[KEYS].create_index(order, name="bs_keys_session")
    await db[SESSIONS].create_index(order, name="bs_sessions_order")
    meta = await db[META].find_one_and_update(
        {"_id": "schema_version"},
        {"$setOnInsert": {"value": SCHEMA_VERSION}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    found = meta.get("value") if meta else None
    if not isinstance(found, int):
        raise UnavailableError(f"mongodb: {META}.schema_version is not an integer")
    if found > SCHEMA_VERSION:
        raise UnavailableError(
            f"mongodb database schema {found} is newer than this baileys-store ({SCHEMA_VERSION})"
        )
    if found < SCHEMA_VERSION:
        await db[META].update_one(
            {"_id": "schema_version", "value": {"$lt": SCHEMA_VERSION}},
            {"$set": {"value": SCHEMA_VERSION}},
        )


async def bind_meta(db: AsyncDatabase[Doc], name: str, value: str, *, replace: bool) -> str:
    """Set ``bs_meta.<name>`` unless set (always with ``replace``); returns the stored value.

    One upsert: concurrent binders of a new name race on its ``_id`` (E11000 for the losers,
    retried by the caller) and the retry reads the winner's value.
    """
    if name in RESERVED_META:
        raise InvalidInputError(f"meta name {name!r} is reserved by the backend")
    op = "$set" if replace else "$setOnInsert"
    doc = await db[META].find_one_and_update(
        {"_id": name}, {op: {"value": value}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    found = doc.get("value") if doc else None
    if not isinstance(found, str):
        raise CorruptDataError(f"mongodb: {META}.{name} is not a string")
    return found


__all__ = [
    "KEYS",
    "META",
    "RESERVED_META",
    "SCHEMA_VERSION",
    "SESSIONS",
    "Doc",
    "bind_meta",
    "ensure_schema",
    "key_doc_id",
    "keys_filter",
    "session_doc_id",
    "session_filter",
]
