"""MongoDB: the fence barrier, outbox batches applied at most once, and leases.

Functions of the backend's :class:`MongoCore`. The outbox sequence lives in the session
document (``outbox_seq``) and is checked and set in the same transaction as the batch's keys.
Leases are documents of ``bs_leases`` (same ``_id`` as the session)::

    {_id, namespace, session_id, owner: str ("" when released), token: int (last issued),
     expires: int (epoch milliseconds, by the server's clock)}

A lease document is never deleted, not even by ``delete_session``: its token is the counter that
keeps tokens monotonic across a delete. Expiry is judged by the server's clock (``$$NOW`` in
update pipelines), so the application hosts' clocks do not matter. ``$$NOW`` is compared as
epoch milliseconds (``$toLong``), which every server compares correctly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ..._model import CredsRecord, KeyWrite, SessionAddr, lease_token_of
from .._fences import check_fence
from . import _schema as s
from ._core import MongoCore, Session, as_int
from ._errors import LostRace
from ._ops import key_ops

Doc = s.Doc
LEASES = "bs_leases"
_NOW_MS = {"$toLong": "$$NOW"}  # the server's clock, epoch milliseconds


def _lease_docs(core: MongoCore) -> AsyncCollection[Doc]:
    return core.db()[LEASES]


async def advance_fence(core: MongoCore, addr: SessionAddr, token: int) -> None:
    """Record ``token`` as the session's fence (FencedError if it saw a higher one).

    One conditional upsert: a session without a document gets a tombstone holding the
    token, so a stale holder's first write is refused as on an existing session. E11000
    means the document exists with a higher fence (or an insert raced ours: retried).
    """
    _, sessions, _ = core.cols()
    filt = s.session_filter(addr)

    async def run() -> None:
        now = time.time()
        tombstone = {"deleted": True, "version": 0, "created_at": now, "updated_at": now}
        try:
            await sessions.update_one(
                {**filt, "fence": {"$lte": token}},
                {"$set": {"fence": token}, "$setOnInsert": tombstone},
                upsert=True,
            )
        except DuplicateKeyError:
            doc = await sessions.find_one(filt, {"fence": 1})
            check_fence(addr, as_int(doc.get("fence", 0), "session fence") if doc else 0, token)
            raise LostRace from None  # the filter matches now: run again

    await core.run("fence", run)


async def apply_batch(
    core: MongoCore,
    addr: SessionAddr,
    writes: Sequence[KeyWrite],
    creds: CredsRecord | None,
    *,
    seq: int,
    fence: int | None = None,
) -> bool:
    """Sequence check, fence check, session update and key writes in one transaction.

    The sequence is checked before the fence: a batch applied before a newer holder
    advanced the fence is a redelivery (False), not a stale write.
    """
    ops = key_ops(addr, writes)
    filt = s.session_filter(addr)

    async def body(session: Session) -> bool:
        _, sessions, keys = core.cols()
        doc = await sessions.find_one(filt, {"outbox_seq": 1}, session=session)
        if doc is not None and as_int(doc.get("outbox_seq", 0), "outbox seq") >= seq:
            return False
        if fence is not None:
            await core.touch(addr, fence, session)  # FenceMiss: diagnosed by fenced()
        now = time.time()
        fields: Doc = {"outbox_seq": seq, "updated_at": now}
        on_insert: Doc = {"created_at": now, "fence": 0}
        if creds is not None:
            fields.update(creds=creds.blob, version=creds.version)
        else:
            on_insert["version"] = 0
        newer = {"$or": [{"outbox_seq": {"$lt": seq}}, {"outbox_seq": {"$exists": False}}]}
        update = {"$set": fields, "$setOnInsert": on_insert, "$unset": {"deleted": ""}}
        try:
            await sessions.update_one({**filt, **newer}, update, upsert=True, session=session)
        except DuplicateKeyError:
            raise LostRace from None  # a concurrent apply: retry, then it reads the seq
        if ops:
            await keys.bulk_write(ops, ordered=True, session=session)
        return True

    return await core.fenced("apply", addr, fence, body, touch=False)


async def acquire_lease(
    core: MongoCore, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
) -> int | None:
    """One conditional upsert, judged by the server's clock: a new token, or None when held.

    The update pipeline takes the lease only when it is free, expired or ``owner``'s, all in
    one atomic single-document write; a concurrent first insert surfaces as E11000 and is
    retried (the retry then finds the lease held).
    """
    _, sessions, _ = core.cols()
    leases, filt = _lease_docs(core), s.session_filter(addr)
    free = {
        "$or": [
            {"$in": [{"$ifNull": ["$owner", ""]}, ["", owner]]},
            {"$lte": [{"$ifNull": ["$expires", 0]}, _NOW_MS]},
        ]
    }

    async def run() -> int | None:
        # The fence is read apart from the lease: a higher fence can only come from a token
        # issued later, by this very counter or a floor the caller passes.
        sess = await sessions.find_one(filt, {"fence": 1})
        fence = lease_token_of(as_int(sess.get("fence", 0), "session fence")) if sess else 0
        token = {"$add": [{"$max": [{"$ifNull": ["$token", 0]}, max(fence, floor)]}, 1]}
        take = [
            {
                "$set": {
                    "owner": {"$cond": [free, owner, "$owner"]},
                    "token": {"$cond": [free, token, "$token"]},
                    "expires": {"$cond": [free, {"$add": [_NOW_MS, ttl_ms]}, "$expires"]},
                }
            }
        ]
        doc = await leases.find_one_and_update(
            filt, take, upsert=True, return_document=ReturnDocument.AFTER
        )
        if doc is None or doc.get("owner") != owner:
            return None
        return as_int(doc.get("token"), "lease token")

    result: int | None = await core.run("acquire lease", run)
    return result


async def _lease_update(
    core: MongoCore, addr: SessionAddr, owner: str, token: int, change: list[Doc], *, live: bool
) -> bool:
    filt: Doc = {**s.session_filter(addr), "owner": owner, "token": token}
    if live:
        filt["$expr"] = {"$gt": ["$expires", _NOW_MS]}
    leases = _lease_docs(core)

    async def run() -> Any:
        return await leases.update_one(filt, change)

    res = await core.run("lease", run)
    return bool(res.matched_count == 1)


async def renew_lease(
    core: MongoCore, addr: SessionAddr, owner: str, token: int, ttl_ms: int
) -> bool:
    """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
    change = [{"$set": {"expires": {"$add": [_NOW_MS, ttl_ms]}}}]
    return await _lease_update(core, addr, owner, token, change, live=True)


async def release_lease(core: MongoCore, addr: SessionAddr, owner: str, token: int) -> bool:
    """Drop the lease if ``owner`` still holds it with ``token`` (the token stays)."""
    change = [{"$set": {"owner": "", "expires": 0}}]
    return await _lease_update(core, addr, owner, token, change, live=False)


__all__ = [
    "LEASES",
    "acquire_lease",
    "advance_fence",
    "apply_batch",
    "release_lease",
    "renew_lease",
]
