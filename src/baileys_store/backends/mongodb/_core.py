"""The MongoDB backend's core: one client, bounded retries, transactions and the fence wrapper.

:class:`MongoCore` owns the client and the collections; the backend and the operation modules
(``_ops``, ``_leases``, ``_listing``) run every driver call through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from bson.errors import BSONError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from ... import errors
from ..._model import SessionAddr
from ...resilience import RetryPolicy, retrying
from ...results import TierHealth
from .._fences import check_fence
from . import _schema as s
from ._errors import FenceMiss, LostRace, is_transient, is_unknown_commit, wrap
from ._url import MongoSettings, parse_mongo_url

T = TypeVar("T")
Doc = s.Doc
Session = AsyncClientSession | None
NAME = "mongodb"
_log = logging.getLogger("baileys_store.backends.mongodb")
# Committing again is the remedy for an unknown commit result (idempotent).
_COMMIT = RetryPolicy(attempts=4, transient=is_unknown_commit, base=0.01, cap=0.2)


def as_int(value: object, what: str) -> int:
    """``value`` if it is an int, else :class:`CorruptDataError` naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.CorruptDataError(f"mongodb: {what} is {type(value).__name__}, not an int")
    return value


def as_bytes(value: object, what: str) -> bytes:
    """``value`` if it is binary (BSON BinData), else :class:`CorruptDataError`."""
    if not isinstance(value, bytes):
        raise errors.CorruptDataError(f"mongodb: {what} is {type(value).__name__}, not binary")
    return bytes(value)


class MongoCore:
    """Client lifecycle, health check, bounded retries and the transaction wrapper.

    Args:
        url: A ``mongodb://`` or ``mongodb+srv://`` URL (see :func:`parse_mongo_url`).
        op_timeout: Default for the driver's timeouts and the bound on one operation's retries.
        attempts: Tries per operation for transient errors.
        client_options: Extra ``AsyncMongoClient`` keyword arguments; they win over the URL.
        on_retry: Called before each retry of an operation.
    """

    def __init__(
        self,
        url: str,
        *,
        op_timeout: float,
        attempts: int,
        client_options: Mapping[str, Any] | None,
        on_retry: Callable[[], None],
    ) -> None:
        self.settings: MongoSettings = parse_mongo_url(url, op_timeout=op_timeout)
        self.op_timeout = op_timeout
        self._options = {**self.settings.client_defaults, **(client_options or {})}
        self._policy = RetryPolicy(
            attempts=attempts,
            transient=is_transient,
            base=0.005,
            cap=0.1,
            deadline=op_timeout,
            on_retry=on_retry,
        )
        self._client: AsyncMongoClient[Doc] | None = None
        self._sessions: AsyncCollection[Doc] | None = None
        self._keys: AsyncCollection[Doc] | None = None
        self.transactions = False
        """Whether the server runs multi-document transactions (set by :meth:`open`)."""

    async def open(self) -> str:
        """Connect, detect transaction support from ``hello``, create the schema.

        Returns:
            The database's store id.
        """
        client: AsyncMongoClient[Doc] = AsyncMongoClient(self.settings.uri, **self._options)
        self._client = client
        db = client[self.settings.database]
        found = ""

        async def setup() -> None:
            nonlocal found
            hello = await client.admin.command("hello")
            # Replica-set members report setName; mongos reports msg "isdbgrid".
            clustered = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            self.transactions = clustered and "logicalSessionTimeoutMinutes" in hello
            await s.ensure_schema(db)
            found = await s.store_id(db)

        try:
            await self.run("open", setup)
        except BaseException:
            await self.close()
            raise
        self._sessions, self._keys = db[s.SESSIONS], db[s.KEYS]
        if not self.transactions:
            _log.warning(
                "MongoDB server is standalone: multi-key writes run as ordered idempotent "
                "batches, not transactions; use a replica set (one node is enough) for atomicity"
            )
        return found

    async def close(self) -> None:
        """Close the client; idempotent."""
        client, self._client = self._client, None
        self._sessions = self._keys = None
        if client is not None:
            await client.close()

    async def check(self) -> TierHealth:
        """One ``ping``; an outage gives ``ok=False``, never an exception."""
        start = time.perf_counter()
        mode = "transactions" if self.transactions else "standalone"
        try:
            client, _, _ = self.cols()
            async with asyncio.timeout(self.op_timeout):
                await client.admin.command("ping")
        except (PyMongoError, errors.StoreError, TimeoutError) as exc:
            ms = (time.perf_counter() - start) * 1000
            return TierHealth(NAME, "durable", False, ms, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        return TierHealth(NAME, "durable", True, ms, f"{self.settings.database} ({mode})")

    def cols(self) -> tuple[AsyncMongoClient[Doc], AsyncCollection[Doc], AsyncCollection[Doc]]:
        """The client and the sessions and keys collections (``StoreClosedError`` if closed)."""
        if self._client is None or self._sessions is None or self._keys is None:
            raise errors.StoreClosedError("mongodb backend is not open")
        return self._client, self._sessions, self._keys

    def db(self) -> AsyncDatabase[Doc]:
        """The backend's database (for the leases and metadata collections)."""
        client, _, _ = self.cols()
        return client[self.settings.database]

    async def run(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` with bounded retries of transient errors; wrap what escapes."""
        try:
            return await retrying(self._policy, fn)
        except errors.StoreError:
            raise
        except (PyMongoError, BSONError, LostRace) as exc:
            # A server error document can hold the failing write, key value included.
            cause = None if isinstance(exc, OperationFailure) else exc
            raise wrap(exc, what, self.settings) from cause

    async def atomic(self, body: Callable[[Session], Awaitable[T]]) -> T:
        """``body`` inside one transaction when the server has them, else directly."""
        client, _, _ = self.cols()
        if not self.transactions:
            return await body(None)
        async with client.start_session() as session:
            await session.start_transaction()
            try:
                result = await body(session)
            except BaseException:
                # Best effort and bounded: the server aborts an abandoned transaction anyway.
                with contextlib.suppress(PyMongoError, TimeoutError):
                    async with asyncio.timeout(min(self.op_timeout, 2.0)):
                        await session.abort_transaction()
                raise
            await retrying(_COMMIT, session.commit_transaction)
            return result

    async def touch(self, addr: SessionAddr, fence: int | None, session: Session) -> None:
        """Fence check + session upsert; E11000 means the filter missed an existing document."""
        _, sessions, _ = self.cols()
        now = time.time()
        filt = s.session_filter(addr)
        on_insert: Doc = {"version": 0, "created_at": now}
        fields: Doc = {"updated_at": now}
        if fence is None:
            on_insert["fence"] = 0
        else:
            filt["fence"] = {"$lte": fence}
            fields["fence"] = fence
        # A tombstone (see _schema) is checked like a live session, then revived.
        update = {"$set": fields, "$setOnInsert": on_insert, "$unset": {"deleted": ""}}
        try:
            await sessions.update_one(filt, update, upsert=True, session=session)
        except DuplicateKeyError:
            raise FenceMiss from None

    async def fenced(
        self,
        what: str,
        addr: SessionAddr,
        fence: int | None,
        body: Callable[[Session], Awaitable[T]],
        *,
        touch: bool = True,
    ) -> T:
        """Run the key operations ``body`` atomically with the session's fence.

        Fenced (``fence`` given): :meth:`touch` checks and records the token first, in the
        same transaction as ``body``; a miss is diagnosed outside the aborted transaction.
        MongoDB aborts the later of two conflicting transactions instead of queueing it, so a
        writer could lose every retry to a busy one (a new token holder to a stale one).
        Before a retry, :meth:`wait_turn` queues behind the transaction in flight and records
        the fence, after which every stale writer is fenced out. Recording the fence alone is
        harmless: it only says the caller holds that token.

        Unfenced: nothing to check, so the session document (``updated_at``, existence for
        listings) is touched after the transaction, by a single-document write that waits
        instead of aborting; unfenced writers of one session then conflict only on the keys
        they share.

        ``touch=False``: ``body`` handles the session document itself (``delete_session``).
        """
        tries = 0

        async def attempt() -> T:
            nonlocal tries
            tries += 1

            async def whole(session: Session) -> T:
                if touch and fence is not None:
                    await self.touch(addr, fence, session)
                return await body(session)

            try:
                if tries > 1 and self.transactions and fence is not None:
                    await self.wait_turn(addr, fence)
                return await self.atomic(whole)
            except FenceMiss:
                # Outside the aborted transaction: is the token stale, or did an insert race?
                check_fence(addr, await self.current_fence(addr), fence)
                raise LostRace from None  # the filter matches now: retry the whole operation

        result = await self.run(what, attempt)
        if touch and fence is None:

            async def after() -> None:
                try:
                    await self.touch(addr, None, None)
                except FenceMiss:
                    raise LostRace from None  # two inserts of a new session raced: retry

            await self.run(what, after)
        return result

    async def wait_turn(self, addr: SessionAddr, fence: int) -> None:
        """Record ``fence`` on the session document outside any transaction.

        Unlike a transaction, this write waits for an in-flight transaction on the document
        instead of aborting, so the retry that follows starts right behind it. No upsert: a
        missing document has no writer to wait for, and a stale token is left for the
        transaction to diagnose.
        """
        _, sessions, _ = self.cols()
        filt = {**s.session_filter(addr), "fence": {"$lte": fence}}
        await sessions.update_one(filt, {"$set": {"fence": fence, "updated_at": time.time()}})

    async def current_fence(self, addr: SessionAddr) -> int:
        """The fence recorded on the session document (0 when there is none)."""
        _, sessions, _ = self.cols()
        doc = await sessions.find_one(s.session_filter(addr), {"fence": 1})
        return as_int(doc.get("fence", 0), "session fence") if doc else 0


__all__ = ["NAME", "MongoCore", "Session", "as_bytes", "as_int"]
