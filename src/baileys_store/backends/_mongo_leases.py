"""MongoDB: the fence barrier, outbox batches applied at most once, and leases.

A mixin of :class:`~baileys_store.backends.mongodb.MongoDurable`. The outbox sequence lives in
the session document (``outbox_seq``) and is checked and set in the same transaction as the
batch's keys. Leases are documents of ``bs_leases`` (same ``_id`` as the session), changed
only by compare-and-set on the token read, so two acquirers never both win; their expiry uses
this host's clock (``time.time()``): keep the application hosts' clocks in sync (NTP).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pymongo import DeleteMany, ReplaceOne
from pymongo.errors import DuplicateKeyError

from .._model import KeyWrite, SessionAddr
from . import _mongo_schema as s
from ._mongo_core import MongoBase, Session, as_int
from ._mongo_errors import LostRace
from .base import CredsRecord, check_fence, lease_token_of

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

Doc = s.Doc
CHUNK = 5000  # ids per delete: far below the 16 MiB command limit even with 1 KiB ids
LEASES = "bs_leases"


def key_ops(addr: SessionAddr, writes: Sequence[KeyWrite]) -> list[ReplaceOne[Doc] | DeleteMany]:
    """One ordered batch for ``writes``: upserts, then deletes; the last write of an id wins."""
    latest: dict[tuple[str, str], bytes | None] = {}
    for w in writes:
        latest[(w.type, w.id)] = w.blob
    scope = s.keys_filter(addr)
    ops: list[ReplaceOne[Doc] | DeleteMany] = []
    gone: list[str] = []
    for (key_type, key_id), blob in latest.items():
        doc_id = s.key_doc_id(addr, key_type, key_id)
        if blob is None:
            gone.append(doc_id)
            continue
        doc = {**scope, "type": key_type, "id": key_id, "value": blob}
        ops.append(ReplaceOne({"_id": doc_id, **scope}, doc, upsert=True))
    ops += [DeleteMany({"_id": {"$in": gone[i : i + CHUNK]}, **scope})
            for i in range(0, len(gone), CHUNK)]  # fmt: skip
    return ops


class MongoLeaseMixin(MongoBase):
    """``advance_fence``, ``apply_batch`` and the :class:`LeaseBackend` methods."""

    def _leases(self) -> AsyncCollection[Doc]:
        client, _, _ = self._cols()
        return client[self.database][LEASES]

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        _, sessions, _ = self._cols()
        filt = s.session_filter(addr)

        async def run() -> None:
            res = await sessions.update_one({**filt, "fence": {"$lte": token}},
                                            {"$set": {"fence": token}})  # fmt: skip
            if res.matched_count == 0:
                doc = await sessions.find_one(filt, {"fence": 1})
                if doc is not None:  # absent: nothing to fence yet
                    check_fence(addr, as_int(doc.get("fence", 0), "session fence"), token)

        await self._run("fence", run)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """Sequence check, session update and key writes in one transaction."""
        ops = key_ops(addr, writes)
        filt = s.session_filter(addr)

        async def body(session: Session) -> bool:
            _, sessions, keys = self._cols()
            doc = await sessions.find_one(filt, {"outbox_seq": 1}, session=session)
            if doc is not None and as_int(doc.get("outbox_seq", 0), "outbox seq") >= seq:
                return False
            now = time.time()
            fields: Doc = {"outbox_seq": seq, "updated_at": now}
            on_insert: Doc = {"created_at": now, "fence": 0}
            if creds is not None:
                fields.update(creds=creds.blob, version=creds.version)
            else:
                on_insert["version"] = 0
            newer = {"$or": [{"outbox_seq": {"$lt": seq}}, {"outbox_seq": {"$exists": False}}]}
            try:
                await sessions.update_one({**filt, **newer},
                                          {"$set": fields, "$setOnInsert": on_insert},
                                          upsert=True, session=session)  # fmt: skip
            except DuplicateKeyError:
                raise LostRace from None  # a concurrent apply: retry, then it reads the seq
            if ops:
                await keys.bulk_write(ops, ordered=True, session=session)
            return True

        return await self._fenced("apply", addr, fence, body)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Compare-and-set on the token read: a new, higher token, or None when held."""
        _, sessions, _ = self._cols()
        leases, filt = self._leases(), s.session_filter(addr)

        async def run() -> int | None:
            now = time.time()
            doc = await leases.find_one(filt)
            if doc is not None and doc.get("owner") not in ("", owner) and doc["expires"] > now:
                return None
            sess = await sessions.find_one(filt, {"fence": 1})
            fence = lease_token_of(as_int(sess.get("fence", 0), "session fence")) if sess else 0
            last = as_int(doc.get("token", 0), "lease token") if doc else 0
            token = max(last, fence, floor) + 1
            # Compare-and-set on what was read: the token, or its absence (a concurrent first
            # acquirer's document then makes this upsert fail with E11000 instead of matching).
            cas: Doc = {**filt, "token": last if doc else {"$exists": False}}
            new = {**filt, "owner": owner, "token": token, "expires": now + ttl_ms / 1000}
            try:
                res = await leases.replace_one(cas, new, upsert=doc is None)
            except DuplicateKeyError:
                raise LostRace from None  # another acquirer inserted first: look again
            if res.matched_count == 0 and res.upserted_id is None:
                raise LostRace  # the token moved since we read it: look again
            return token

        result: int | None = await self._run("acquire lease", run)
        return result

    async def _lease_update(self, addr: SessionAddr, owner: str, token: int,
                            change: Doc, *, live: bool) -> bool:  # fmt: skip
        filt: Doc = {**s.session_filter(addr), "owner": owner, "token": token}
        if live:
            filt["expires"] = {"$gt": time.time()}
        leases = self._leases()

        async def run() -> Any:
            return await leases.update_one(filt, {"$set": change})

        res = await self._run("lease", run)
        return bool(res.matched_count == 1)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
        change = {"expires": time.time() + ttl_ms / 1000}
        return await self._lease_update(addr, owner, token, change, live=True)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        return await self._lease_update(addr, owner, token, {"owner": "", "expires": 0.0},
                                        live=False)  # fmt: skip
