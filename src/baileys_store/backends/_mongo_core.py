"""Connection, retries and transactions shared by the MongoDB backend's operations."""

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
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .. import errors
from .._model import SessionAddr
from ..results import TierHealth
from . import _mongo_schema as s
from ._fences import check_fence
from ._mongo_errors import FenceMiss, LostRace, is_transient, is_unknown_commit, wrap
from ._mongo_url import parse_mongo_url

T = TypeVar("T")
Doc = s.Doc
Session = AsyncClientSession | None
_log = logging.getLogger("baileys_store.backends.mongodb")


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


class MongoBase:
    """Client lifecycle, health check, bounded retries and the transaction wrapper.

    Args:
        url: ``mongodb://[user:pass@]host[:port][,host...]/[database][?options]`` or
            ``mongodb+srv://...``; database defaults to ``baileys_store``. Standard pymongo URI
            options only (unknown ones raise ``ConfigError``).
        op_timeout: Default for server selection, connect and socket timeouts (seconds), and
            the bound on the retries of one operation.
        attempts: Tries per operation for transient errors.
        client_options: Extra ``AsyncMongoClient`` keyword arguments (e.g. ``event_listeners``,
            an ``SSLContext``); they win over URL options.
    """

    name = "mongodb"

    def __init__(
        self,
        url: str,
        *,
        op_timeout: float = 10.0,
        attempts: int = 8,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = parse_mongo_url(url, op_timeout=op_timeout)
        self.store_id = ""  # known once open (see base.DurableBackend)
        self._options = {**self._settings.client_defaults, **(client_options or {})}
        self._op_timeout = op_timeout
        self._retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.005, max=0.1),
            stop=stop_after_attempt(attempts) | stop_after_delay(op_timeout),
            retry=retry_if_exception(is_transient),
            reraise=True,
            before_sleep=lambda _: self.on_retry(),
        )
        self.on_retry: Callable[[], None] = lambda: None  # the store counts retries here
        self._client: AsyncMongoClient[Doc] | None = None
        self._sessions: AsyncCollection[Doc] | None = None
        self._keys: AsyncCollection[Doc] | None = None
        self.transactions = False
        """Whether the server runs multi-document transactions (set by :meth:`open`)."""

    @property
    def database(self) -> str:
        """Name of the database holding the ``bs_*`` collections."""
        return self._settings.database

    async def open(self) -> None:
        """Connect, detect transaction support from ``hello`` and create the schema."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(self._settings.uri, **self._options)
        self._client = client
        db = client[self._settings.database]

        async def setup() -> None:
            hello = await client.admin.command("hello")
            # Replica-set members report setName; mongos reports msg "isdbgrid".
            clustered = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            self.transactions = clustered and "logicalSessionTimeoutMinutes" in hello
            await s.ensure_schema(db)
            self.store_id = await s.store_id(db)

        try:
            await self._run("open", setup)
        except BaseException:
            await self.close()
            raise
        self._sessions, self._keys = db[s.SESSIONS], db[s.KEYS]
        if not self.transactions:
            _log.warning(
                "MongoDB server is standalone: multi-key writes run as ordered idempotent "
                "batches, not transactions; use a replica set (one node is enough) for atomicity"
            )

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
            client, _, _ = self._cols()
            async with asyncio.timeout(self._op_timeout):
                await client.admin.command("ping")
        except (PyMongoError, errors.StoreError, TimeoutError) as exc:
            ms = (time.perf_counter() - start) * 1000
            return TierHealth(self.name, "durable", False, ms, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        return TierHealth(self.name, "durable", True, ms, f"{self.database} ({mode})")

    def _cols(self) -> tuple[AsyncMongoClient[Doc], AsyncCollection[Doc], AsyncCollection[Doc]]:
        if self._client is None or self._sessions is None or self._keys is None:
            raise errors.StoreClosedError("mongodb backend is not open")
        return self._client, self._sessions, self._keys

    async def _run(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` with bounded retries of transient errors; wrap what escapes."""
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    return await fn()
        except errors.StoreError:
            raise
        except (PyMongoError, BSONError, LostRace) as exc:
            # A server error document can hold the failing write, key value included.
            cause = None if isinstance(exc, OperationFailure) else exc
            raise wrap(exc, what, self._settings) from cause
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _atomic(self, body: Callable[[Session], Awaitable[T]]) -> T:
        """``body`` inside one transaction when the server has them, else directly."""
        client, _, _ = self._cols()
        if not self.transactions:
            return await body(None)
        async with client.start_session() as session:
            await session.start_transaction()
            try:
                result = await body(session)
            except BaseException:
                # Best effort and bounded: the server aborts an abandoned transaction anyway.
                with contextlib.suppress(PyMongoError, TimeoutError):
                    async with asyncio.timeout(min(self._op_timeout, 2.0)):
                        await session.abort_transaction()
                raise
            # Committing again is the remedy for an unknown commit result (idempotent).
            commit = AsyncRetrying(
                wait=wait_random_exponential(multiplier=0.01, max=0.2),
                stop=stop_after_attempt(4),
                retry=retry_if_exception(is_unknown_commit),
                reraise=True,
            )
            async for attempt in commit:
                with attempt:
                    await session.commit_transaction()
            return result

    async def _touch(self, addr: SessionAddr, fence: int | None, session: Session) -> None:
        """Fence check + session upsert; E11000 means the filter missed an existing document."""
        _, sessions, _ = self._cols()
        now = time.time()
        filt = s.session_filter(addr)
        on_insert: Doc = {"version": 0, "created_at": now}
        fields: Doc = {"updated_at": now}
        if fence is None:
            on_insert["fence"] = 0
        else:
            filt["fence"] = {"$lte": fence}
            fields["fence"] = fence
        # A tombstone (see _mongo_schema) is checked like a live session, then revived.
        update = {"$set": fields, "$setOnInsert": on_insert, "$unset": {"deleted": ""}}
        try:
            await sessions.update_one(filt, update, upsert=True, session=session)
        except DuplicateKeyError:
            raise FenceMiss from None

    async def _fenced(
        self,
        what: str,
        addr: SessionAddr,
        fence: int | None,
        body: Callable[[Session], Awaitable[T]],
        *,
        touch: bool = True,
    ) -> T:
        """Run the key operations ``body`` atomically with the session's fence.

        Fenced (``fence`` given): :meth:`_touch` checks and records the token first, in the
        same transaction as ``body``; a miss is diagnosed outside the aborted transaction.
        MongoDB aborts the later of two conflicting transactions instead of queueing it, so a
        writer could lose every retry to a busy one (a new token holder to a stale one).
        Before a retry, :meth:`_wait_turn` queues behind the transaction in flight and records
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
                    await self._touch(addr, fence, session)
                return await body(session)

            try:
                if tries > 1 and self.transactions and fence is not None:
                    await self._wait_turn(addr, fence)
                return await self._atomic(whole)
            except FenceMiss:
                # Outside the aborted transaction: is the token stale, or did an insert race?
                check_fence(addr, await self._current_fence(addr), fence)
                raise LostRace from None  # the filter matches now: retry the whole operation

        result = await self._run(what, attempt)
        if touch and fence is None:

            async def after() -> None:
                try:
                    await self._touch(addr, None, None)
                except FenceMiss:
                    raise LostRace from None  # two inserts of a new session raced: retry

            await self._run(what, after)
        return result

    async def _wait_turn(self, addr: SessionAddr, fence: int) -> None:
        """Record ``fence`` on the session document outside any transaction.

        Unlike a transaction, this write waits for an in-flight transaction on the document
        instead of aborting, so the retry that follows starts right behind it. No upsert: a
        missing document has no writer to wait for, and a stale token is left for the
        transaction to diagnose.
        """
        _, sessions, _ = self._cols()
        filt = {**s.session_filter(addr), "fence": {"$lte": fence}}
        await sessions.update_one(filt, {"$set": {"fence": fence, "updated_at": time.time()}})

    async def _current_fence(self, addr: SessionAddr) -> int:
        _, sessions, _ = self._cols()
        doc = await sessions.find_one(s.session_filter(addr), {"fence": 1})
        return as_int(doc.get("fence", 0), "session fence") if doc else 0


__all__ = ["MongoBase", "Session", "as_bytes", "as_int"]
