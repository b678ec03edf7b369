"""AuthStore: the durable tier, an optional cache in front, per-session write ordering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from ._config import StoreConfig
from ._model import KeyWrite, SessionAddr, check_namespace, session_addr
from ._session import SessionAuth
from .backends._registry import make_cache, make_durable
from .backends.base import CacheBackend, CredsRecord, DurableBackend, SessionInfo, TierHealth
from .codec import Codec
from .errors import StoreClosedError, UnavailableError

T = TypeVar("T")


_CREDS = ("", "creds")  # the creds record in ``_SessionState.writing`` (no key type is empty)


class _SessionState:
    """Write lock + generation of one session, alive while any task uses the session.

    ``gen`` changes before and after every write, so a reader that filled nothing while a write
    ran can tell, and never puts an older durable value into the cache after a newer write.
    ``writing`` names the records of the write in flight (``writing_all``: every record): the
    durable tier may already show them while the cache does not yet, so reads of them skip the
    cache. Otherwise one read could see a transaction's new durable value and the next read its
    old cached one: a torn multi-type write.
    """

    __slots__ = ("gen", "lock", "users", "writing", "writing_all")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.gen = 0
        self.users = 0
        self.writing: frozenset[tuple[str, str]] = frozenset()
        self.writing_all = False

    def cached(self, key_type: str, ids: list[str]) -> list[str]:
        """The ids a read may take from the cache."""
        if self.writing_all:
            return []
        if not self.writing:
            return ids
        return [i for i in ids if (key_type, i) not in self.writing]


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Aggregate health of the tiers.

    ``healthy`` when every tier answers, ``degraded`` when only the cache fails (reads fall back
    to the durable tier), ``unhealthy`` when the durable tier fails.
    """

    status: str
    tiers: tuple[TierHealth, ...]


class AuthStore:
    """The store. Get one from :func:`open_store`; get sessions from :meth:`session`."""

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        durable: DurableBackend | None = None,
        cache: CacheBackend | None = None,
    ) -> None:
        self.config = config or StoreConfig()
        self.codec: Codec = self.config.codec()
        self.durable: DurableBackend = durable or make_durable(self.config)
        self.cache: CacheBackend | None = cache if durable or cache else make_cache(self.config)
        self._timeout = self.config.op_timeout
        self._states: dict[SessionAddr, _SessionState] = {}
        # Sessions whose cache entries may be stale (a cache update failed after a durable
        # write): reads bypass the cache until a later write manages to drop the session there.
        self._untrusted: set[SessionAddr] = set()
        self._open = False

    async def open(self) -> None:
        """Open the tiers (durable first: it is the one that must work)."""
        await self._guard("durable", self.durable.open())
        if self.cache is not None:
            try:
                await self._guard("cache", self.cache.open())
            except BaseException:
                await self.durable.close()
                raise
        self._open = True

    async def close(self) -> None:
        """Close the tiers; idempotent."""
        self._open = False
        if self.cache is not None:
            await self.cache.close()
        await self.durable.close()

    async def __aenter__(self) -> AuthStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def session(self, session_id: str, *, namespace: str = "default") -> SessionAuth:
        """The session ``(namespace, session_id)``; both are validated here.

        Raises:
            InvalidInputError: a bad namespace or session id.
        """
        return SessionAuth(self, session_addr(namespace, session_id))

    async def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Every session stored in the durable tier (optionally of one namespace)."""
        self._check_open()
        ns = check_namespace(namespace) if namespace is not None else None
        async for info in self.durable.list_sessions(ns):
            yield info

    async def check(self) -> StoreHealth:
        """Ask every tier for a round trip and aggregate."""
        self._check_open()
        tiers = [await self._probe(self.durable, "durable")]
        if self.cache is not None:
            tiers.append(await self._probe(self.cache, "cache"))
        if not tiers[0].ok:
            status = "unhealthy"
        elif any(not t.ok for t in tiers):
            status = "degraded"
        else:
            status = "healthy"
        return StoreHealth(status, tuple(tiers))

    async def _probe(self, backend: DurableBackend | CacheBackend, tier: str) -> TierHealth:
        try:
            return await self._guard(tier, backend.check())
        except UnavailableError as exc:
            return TierHealth(backend.name, tier, False, self._timeout * 1000, str(exc))

    # -- internals used by SessionAuth / KeyStore -------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosedError("the store is closed; use `async with open_store(...)`")

    async def _guard(self, tier: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except TimeoutError:
            raise UnavailableError(f"{tier} tier did not answer within {self._timeout}s") from None

    @asynccontextmanager
    async def _use(
        self,
        addr: SessionAddr,
        *,
        write: bool = False,
        touched: frozenset[tuple[str, str]] | None = frozenset(),
    ) -> AsyncIterator[_SessionState]:
        """Hold the session state; with ``write`` its lock too (``touched=None``: all records)."""
        self._check_open()
        state = self._states.get(addr)
        if state is None:
            state = self._states[addr] = _SessionState()
        state.users += 1
        try:
            if write:
                async with state.lock:
                    state.gen += 1
                    state.writing, state.writing_all = touched or frozenset(), touched is None
                    try:
                        yield state
                    finally:
                        state.writing, state.writing_all = frozenset(), False
                        state.gen += 1
            else:
                yield state
        finally:
            state.users -= 1
            if state.users == 0:
                del self._states[addr]

    def _cache_for(self, addr: SessionAddr) -> CacheBackend | None:
        return None if addr in self._untrusted else self.cache

    async def _get_blobs(
        self, addr: SessionAddr, key_type: str, ids: list[str]
    ) -> dict[str, bytes]:
        async with self._use(addr) as state:
            cache = self._cache_for(addr)
            found: dict[str, bytes] = {}
            cached = state.cached(key_type, ids) if cache is not None else []
            if cache is not None and cached:
                found = await self._guard("cache", cache.get_keys(addr, key_type, cached))
                if len(found) == len(ids):
                    return found
            misses = [i for i in ids if i not in found]
            gen, busy = state.gen, state.lock.locked()
            loaded = await self._guard("durable", self.durable.get_keys(addr, key_type, misses))
            if cache is not None and loaded and not busy and state.gen == gen:
                writes = [KeyWrite(key_type, i, b) for i, b in loaded.items()]
                await self._guard("cache", cache.put_keys(addr, writes))
            found.update(loaded)
            return found

    async def _sync_cache(
        self, addr: SessionAddr, apply: Callable[[CacheBackend], Awaitable[None]]
    ) -> None:
        """Bring the cache in line after a durable write (or its failure).

        If that fails, the session's cache entries may be stale: stop trusting them until a
        later write drops them all.
        """
        cache = self.cache
        if cache is None:
            return
        try:
            if addr in self._untrusted:
                await self._guard("cache", cache.drop_session(addr))
                self._untrusted.discard(addr)
            await self._guard("cache", apply(cache))
        except BaseException:
            self._untrusted.add(addr)
            raise

    async def _after_failure(
        self, addr: SessionAddr, apply: Callable[[CacheBackend], Awaitable[None]]
    ) -> None:
        # The durable write may have been applied before it failed: evict, never serve old data.
        with contextlib.suppress(Exception):
            await self._sync_cache(addr, apply)

    async def _write(
        self,
        addr: SessionAddr,
        touched: frozenset[tuple[str, str]] | None,
        durable_op: Callable[[], Awaitable[T]],
        evict: Callable[[CacheBackend], Awaitable[None]],
        sync: Callable[[CacheBackend, T], Awaitable[None]],
    ) -> T:
        """One write: under the session lock, the durable tier first, then the cache.

        ``evict`` runs when the durable write fails (it may have been applied before failing);
        ``sync`` brings the cache in line with the durable result.
        """
        async with self._use(addr, write=True, touched=touched):
            try:
                result = await self._guard("durable", durable_op())
            except BaseException:
                await self._after_failure(addr, evict)
                raise
            await self._sync_cache(addr, lambda c: sync(c, result))
            return result

    async def _write_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        await self._write(
            addr,
            frozenset((w.type, w.id) for w in writes),
            lambda: self.durable.write_keys(addr, writes),
            lambda c: c.put_keys(addr, [KeyWrite(w.type, w.id, None) for w in writes]),
            lambda c, _: c.put_keys(addr, writes),
        )

    async def _clear_keys(self, addr: SessionAddr) -> None:
        await self._write(
            addr,
            None,
            lambda: self.durable.clear_keys(addr),
            lambda c: c.drop_session(addr),
            lambda c, _: c.drop_session(addr),
        )

    async def _load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        async with self._use(addr) as state:
            cache = self._cache_for(addr)
            if cache is not None and state.cached(_CREDS[0], [_CREDS[1]]):
                cached = await self._guard("cache", cache.get_creds(addr))
                if cached is not None:
                    return cached
            gen, busy = state.gen, state.lock.locked()
            record = await self._guard("durable", self.durable.load_creds(addr))
            if cache is not None and record is not None and not busy and state.gen == gen:
                await self._guard("cache", cache.put_creds(addr, record))
            return record

    async def _save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        return await self._write(
            addr,
            frozenset({_CREDS}),
            lambda: self.durable.save_creds(addr, blob, expected_version=expected),
            lambda c: c.put_creds(addr, None),
            lambda c, version: c.put_creds(addr, CredsRecord(blob, version)),
        )

    async def _delete_session(self, addr: SessionAddr) -> bool:
        return await self._write(
            addr,
            None,
            lambda: self.durable.delete_session(addr),
            lambda c: c.drop_session(addr),
            lambda c, _: c.drop_session(addr),
        )


@asynccontextmanager
async def open_store(config: StoreConfig | str | None = None) -> AsyncIterator[AuthStore]:
    """Open a store for the duration of an ``async with`` block.

    Args:
        config: A :class:`StoreConfig`, a durable URL (other settings default), or ``None`` for
            the embedded default (``sqlite:///baileys-store.db`` + in-process cache).
    """
    if isinstance(config, str):
        config = StoreConfig(durable=config)
    store = AuthStore(config)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
