"""MongoDB: the key and creds operations, as functions of the backend's :class:`MongoCore`.

Keys are written by one ordered ``bulk_write`` (upserts, then deletes) inside the session's
fenced transaction (see ``MongoCore.fenced``); creds by one conditional ``find_one_and_update``
whose lost races are diagnosed by re-reading (see the package docstring).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pymongo import DeleteMany, ReplaceOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr, last_writes
from .._fences import check_fence, check_version
from . import _schema as s
from ._core import MongoCore, Session, as_bytes, as_int
from ._errors import FenceMiss, LostRace

Doc = s.Doc
CHUNK = 5000  # ids per find / delete: far below the 16 MiB command limit even with 1 KiB ids


def key_ops(addr: SessionAddr, writes: Sequence[KeyWrite]) -> list[ReplaceOne[Doc] | DeleteMany]:
    """One ordered batch for ``writes``: upserts, then deletes; the last write of an id wins."""
    scope = s.keys_filter(addr)
    ops: list[ReplaceOne[Doc] | DeleteMany] = []
    gone: list[str] = []
    for w in last_writes(writes):
        doc_id = s.key_doc_id(addr, w.type, w.id)
        if w.blob is None:
            gone.append(doc_id)
            continue
        doc = {**scope, "type": w.type, "id": w.id, "value": w.blob}
        ops.append(ReplaceOne({"_id": doc_id, **scope}, doc, upsert=True))
    ops += [
        DeleteMany({"_id": {"$in": gone[i : i + CHUNK]}, **scope})
        for i in range(0, len(gone), CHUNK)
    ]
    return ops


async def get_keys(
    core: MongoCore, addr: SessionAddr, key_type: str, ids: Sequence[str]
) -> dict[str, bytes]:
    """One ``find({_id: {$in: ...}})`` per 5000 ids, sized so no ``getMore`` is needed."""
    _, _, keys = core.cols()
    out: dict[str, bytes] = {}
    for start in range(0, len(ids), CHUNK):
        by_doc_id = {s.key_doc_id(addr, key_type, i): i for i in ids[start : start + CHUNK]}
        query = {"_id": {"$in": list(by_doc_id)}, **s.keys_filter(addr)}
        n = len(by_doc_id)

        async def fetch(q: Doc = query, n: int = n) -> list[Doc]:
            # limit + batch size: the whole answer in the first batch, cursor closed.
            return await keys.find(q, {"value": 1}, limit=n, batch_size=n + 1).to_list()

        for doc in await core.run("get", fetch):
            key_id = by_doc_id.get(str(doc.get("_id")))
            if key_id is None:
                raise errors.CorruptDataError("mongodb: find returned a key that was not asked")
            out[key_id] = as_bytes(doc.get("value"), f"value of {key_type} key in {addr}")
    return out


async def write_keys(
    core: MongoCore, addr: SessionAddr, writes: Sequence[KeyWrite], fence: int | None
) -> None:
    """One ordered ``bulk_write`` (upserts, then deletes) in one transaction with the fence."""
    ops = key_ops(addr, writes)

    async def body(session: Session) -> None:
        if ops:
            await core.cols()[2].bulk_write(ops, ordered=True, session=session)

    await core.fenced("set", addr, fence, body)


async def clear_keys(core: MongoCore, addr: SessionAddr, fence: int | None) -> int:
    """``delete_many`` of the session's keys, in one transaction with the fence."""

    async def body(session: Session) -> int:
        res = await core.cols()[2].delete_many(s.keys_filter(addr), session=session)
        return res.deleted_count

    return await core.fenced("clear", addr, fence, body)


async def load_creds(core: MongoCore, addr: SessionAddr) -> CredsRecord | None:
    """The creds of the session document, if saved."""
    _, sessions, _ = core.cols()

    async def fetch() -> Doc | None:
        return await sessions.find_one(s.session_filter(addr), {"creds": 1, "version": 1})

    doc = await core.run("load creds", fetch)
    if doc is None or doc.get("creds") is None:
        return None
    blob = as_bytes(doc["creds"], f"creds of {addr}")
    return CredsRecord(blob, as_int(doc.get("version"), f"creds version of {addr}"))


async def save_creds(
    core: MongoCore,
    addr: SessionAddr,
    blob: bytes,
    expected_version: int | None,
    fence: int | None,
) -> int:
    """Compare-and-set in one ``find_one_and_update``; see the package docstring."""
    _, sessions, _ = core.cols()
    tries = 0

    async def attempt() -> int:
        nonlocal tries
        tries += 1
        now = time.time()
        filt = s.session_filter(addr)
        fields: Doc = {"creds": blob, "updated_at": now}
        update: Doc = {
            "$set": fields,
            "$setOnInsert": {"created_at": now},
            "$unset": {"deleted": ""},
        }
        if fence is None:
            update["$setOnInsert"]["fence"] = 0
        else:
            filt["fence"] = {"$lte": fence}
            fields["fence"] = fence
        if expected_version is None:
            update["$inc"] = {"version": 1}
        else:
            filt["version"] = expected_version
            fields["version"] = expected_version + 1
        try:
            doc = await sessions.find_one_and_update(
                filt,
                update,
                {"version": 1},
                upsert=expected_version in (None, 0),  # never create at version > 1
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            doc = None  # exists with another fence or version: a lost race, diagnosed below
        if doc is not None:
            return as_int(doc.get("version"), f"creds version of {addr}")
        cur = await sessions.find_one(s.session_filter(addr), {"_id": 0})
        check_fence(addr, as_int(cur.get("fence", 0), "fence") if cur else 0, fence)
        version = as_int(cur.get("version", 0), "creds version") if cur else 0
        if tries > 1 and cur and cur.get("creds") == blob and expected_version == version - 1:
            return version  # an earlier attempt of this call was applied before its error
        check_version(addr, version, expected_version)
        raise LostRace  # the condition holds now: the document changed between the two reads

    return await core.run("save creds", attempt)


async def delete_session(core: MongoCore, addr: SessionAddr, fence: int | None) -> bool:
    """Empty the session document into a tombstone and delete its keys, in one transaction.

    The tombstone keeps the fence (``fence`` recorded, even on a session never written),
    so a stale holder's later write is refused. The conditional upsert (``fence <= token``)
    raises E11000 for a stale token, diagnosed by ``MongoCore.fenced``. A tombstone whose
    fence is 0 (a store without leases) carries nothing and is removed.
    """
    _, sessions, keys = core.cols()

    async def body(session: Session) -> bool:
        now = time.time()
        filt = s.session_filter(addr)
        fields: Doc = {"deleted": True, "version": 0, "updated_at": now}
        if fence is not None:
            filt["fence"] = {"$lte": fence}
            fields["fence"] = fence
        update = {
            "$set": fields,
            "$unset": {"creds": "", "outbox_seq": ""},
            "$setOnInsert": {"created_at": now},
        }
        try:
            old = await sessions.find_one_and_update(
                filt,
                update,
                {"deleted": 1, "fence": 1},
                upsert=fence is not None,
                return_document=ReturnDocument.BEFORE,
                session=session,
            )
        except DuplicateKeyError:
            raise FenceMiss from None  # exists with a higher fence, or an insert raced
        kept = fence if fence is not None else as_int((old or {}).get("fence", 0), "fence")
        if kept == 0 and (old is not None or fence is not None):
            await sessions.delete_one(s.session_filter(addr), session=session)
        dropped = await keys.delete_many(s.keys_filter(addr), session=session)
        return bool((old is not None and not old.get("deleted")) or dropped.deleted_count)

    return await core.fenced("delete session", addr, fence, body, touch=False)


__all__ = [
    "CHUNK",
    "clear_keys",
    "delete_session",
    "get_keys",
    "key_ops",
    "load_creds",
    "save_creds",
    "write_keys",
]
