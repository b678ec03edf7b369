"""MongoDB durable tier (pymongo ``AsyncMongoClient``): ``mongodb://HOST/DB`` or ``mongodb+srv://``.

Layout and ids: see ``_mongo_schema``. Atomicity depends on the deployment, detected on open:

* **Replica set or sharded cluster** (a single-node replica set is enough): every write that
  touches keys runs in one transaction: one ordered ``bulk_write`` of all upserts and deletes
  (one ``update`` command, plus one ``delete`` command when the call deletes), then commit.
  With a fencing token, the session document's conditional upsert (``fence <= token``) runs
  first in the same transaction: a stale token aborts before any key is written, and a
  concurrent writer collides on the session document (WriteConflict) and is retried, so
  nothing slips between the check and the writes. Without a token, the session document
  (``updated_at``) is touched after the commit by a plain single-document write, so unfenced
  writers of one session only conflict on the keys they share.
* **Standalone server** (no transactions): the same fence upsert, then the same ordered bulk
  write, without a transaction. Weaker: a failure midway can leave a prefix of the batch applied
  (each upsert sets an absolute value and each delete of a missing key is a no-op, so re-running
  the whole call, as Baileys does, converges), and a writer with a newer token can interleave
  between the fence check and the keys. A warning is logged on open.

Creds are one document, so their compare-and-set needs no transaction: a ``find_one_and_update``
whose filter holds ``version == expected`` and ``fence <= token``. When the filter misses, an
upsert raises E11000 (the document exists with other values): the lost race is diagnosed by
re-reading, and raised as ``FencedError`` / ``ConflictError``; the condition is never dropped.

Retries: transient errors (WriteConflict, TransientTransactionError, dropped connections,
failover codes, upsert races) re-run the whole operation with full-jitter backoff, bounded by
``attempts`` and by ``op_timeout``; a commit with an unknown result is committed again a few
times. The driver's own ``retryWrites``/``retryReads`` add at most one retry each, and make a
retried single-document write apply once.

Logging: pymongo's own DEBUG command log (logger ``pymongo.command``) prints command documents,
stored values included; keep that logger above DEBUG in production (or enable encryption).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from .. import errors
from .._config import StoreConfig
from .._model import CredsRecord, KeyWrite, SessionAddr
from ..results import SessionInfo
from . import _mongo_schema as s
from ._fences import check_fence, check_version
from ._mongo_core import Session, as_bytes, as_int
from ._mongo_errors import FenceMiss, LostRace
from ._mongo_leases import CHUNK, MongoLeaseMixin, key_ops
from ._mongo_listing import MongoListingMixin

Doc = s.Doc
_CHUNK = CHUNK
_PAGE = 500


class MongoDurable(MongoListingMixin, MongoLeaseMixin):
    """Durable tier on MongoDB; constructor arguments: see :class:`MongoBase`."""

    # -- keys --------------------------------------------------------------------------------

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One ``find({_id: {$in: ...}})`` per 5000 ids, sized so no ``getMore`` is needed."""
        _, _, keys = self._cols()
        out: dict[str, bytes] = {}
        for start in range(0, len(ids), _CHUNK):
            by_doc_id = {s.key_doc_id(addr, key_type, i): i for i in ids[start : start + _CHUNK]}
            query = {"_id": {"$in": list(by_doc_id)}, **s.keys_filter(addr)}
            n = len(by_doc_id)

            async def fetch(q: Doc = query, n: int = n) -> list[Doc]:
                # limit + batch size: the whole answer in the first batch, cursor closed.
                return await keys.find(q, {"value": 1}, limit=n, batch_size=n + 1).to_list()

            for doc in await self._run("get", fetch):
                key_id = by_doc_id.get(str(doc.get("_id")))
                if key_id is None:
                    raise errors.CorruptDataError("mongodb: find returned a key that was not asked")
                out[key_id] = as_bytes(doc.get("value"), f"value of {key_type} key in {addr}")
        return out

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """One ordered ``bulk_write`` (upserts, then deletes) in one transaction with the fence."""
        ops = key_ops(addr, writes)

        async def body(session: Session) -> None:
            if ops:
                await self._cols()[2].bulk_write(ops, ordered=True, session=session)

        await self._fenced("set", addr, fence, body)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """``delete_many`` of the session's keys, in one transaction with the fence."""

        async def body(session: Session) -> int:
            res = await self._cols()[2].delete_many(s.keys_filter(addr), session=session)
            return res.deleted_count

        return await self._fenced("clear", addr, fence, body)

    # -- creds and sessions ------------------------------------------------------------------

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds of the session document, if saved."""
        _, sessions, _ = self._cols()

        async def fetch() -> Doc | None:
            return await sessions.find_one(s.session_filter(addr), {"creds": 1, "version": 1})

        doc = await self._run("load creds", fetch)
        if doc is None or doc.get("creds") is None:
            return None
        blob = as_bytes(doc["creds"], f"creds of {addr}")
        return CredsRecord(blob, as_int(doc.get("version"), f"creds version of {addr}"))

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set in one ``find_one_and_update``; see the module docstring."""
        _, sessions, _ = self._cols()
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

        return await self._run("save creds", attempt)

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Empty the session document into a tombstone and delete its keys, in one transaction.

        The tombstone keeps the fence (``fence`` recorded, even on a session never written),
        so a stale holder's later write is refused. The conditional upsert (``fence <= token``)
        raises E11000 for a stale token, diagnosed by ``_fenced``. A tombstone whose fence is 0
        (a store without leases) carries nothing and is removed.
        """
        _, sessions, keys = self._cols()

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

        return await self._fenced("delete session", addr, fence, body, touch=False)

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Keyset pages of 500 on the ``(namespace, session_id)`` index."""
        _, sessions, _ = self._cols()
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
                return await sessions.find(q, fields).sort(order).limit(_PAGE).to_list()

            docs = await self._run("list sessions", page)
            for d in docs:
                try:
                    ns, sid = str(d["namespace"]), str(d["session_id"])
                    updated = float(d.get("updated_at", 0.0))
                except (KeyError, TypeError, ValueError):
                    raise errors.CorruptDataError("mongodb: malformed session document") from None
                yield SessionInfo(ns, sid, as_int(d.get("version", 0), "creds version"), updated)
            if len(docs) < _PAGE:
                return
            last = (str(docs[-1]["namespace"]), str(docs[-1]["session_id"]))


def from_config(config: StoreConfig, role: str) -> MongoDurable:
    """The backend for ``config.durable`` (MongoDB is a durable tier only)."""
    if role != "durable":
        raise errors.ConfigError(
            "mongodb can only be the durable tier; use memory:// or redis:// as the cache"
        )
    return MongoDurable(config.durable, op_timeout=config.op_timeout)


__all__ = ["MongoDurable", "from_config"]
