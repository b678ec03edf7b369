"""Per-session in-process state: the write lock, the write generation, the records in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._model import SessionAddr
from ..errors import UnavailableError

CREDS = ("", "creds")  # the creds record in ``SessionState.writing`` (no key type is empty)


class SessionState:
    """Write lock + generation of one session, alive while any task uses the session.

    ``gen`` changes before and after every write, so a reader that filled nothing while a write
    ran can tell, and never puts an older durable value into a cache after a newer write.
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

    def quiet_since(self, gen: int) -> bool:
        """True when no write ran or runs since ``gen`` was read (a fill is then safe)."""
        return self.gen == gen and not self.lock.locked()


class SessionStates:
    """The states of the sessions in use; a state is dropped when its last user leaves."""

    __slots__ = ("_states", "lock_timeout")

    def __init__(self, lock_timeout: float | None = None) -> None:
        self._states: dict[SessionAddr, SessionState] = {}
        # A write waits at most this long for the session's earlier writes (None: forever).
        self.lock_timeout = lock_timeout

    def __len__(self) -> int:
        return len(self._states)

    @asynccontextmanager
    async def use(
        self,
        addr: SessionAddr,
        *,
        write: bool = False,
        touched: frozenset[tuple[str, str]] | None = frozenset(),
    ) -> AsyncIterator[SessionState]:
        """Hold the session state; with ``write`` its lock too (``touched=None``: all records)."""
        state = self._states.get(addr)
        if state is None:
            state = self._states[addr] = SessionState()
        state.users += 1
        try:
            if write:
                try:
                    if state.lock.locked():  # free: acquire() returns at once, no deadline needed
                        async with asyncio.timeout(self.lock_timeout):
                            await state.lock.acquire()
                    else:
                        await state.lock.acquire()
                except TimeoutError:
                    raise UnavailableError(
                        f"session {addr}: earlier writes still running after {self.lock_timeout}s"
                    ) from None
                try:
                    state.gen += 1
                    state.writing, state.writing_all = touched or frozenset(), touched is None
                    try:
                        yield state
                    finally:
                        state.writing, state.writing_all = frozenset(), False
                        state.gen += 1
                finally:
                    state.lock.release()
            else:
                yield state
        finally:
            state.users -= 1
            if state.users == 0:
                del self._states[addr]
