"""Per-session in-process state: the write lock, the write generation, the records in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from .._model import SessionAddr
from ..errors import UnavailableError

CREDS = ("", "creds")  # the creds record in ``SessionState.writing`` (no key type is empty)
Touched = frozenset[tuple[str, str]]
NOTHING: Touched = frozenset()


# A dataclass: its generated ``__init__`` is built once at import, and a state is made per
# operation on an idle session (the hot path of the embedded default).
@dataclass(slots=True, eq=False)
class SessionState:
    """Write lock + generation of one session, alive while any task uses the session.

    ``gen`` changes before and after every write, so a reader that filled nothing while a write
    ran can tell, and never puts an older durable value into a cache after a newer write.
    ``writing`` names the records of the write in flight (``writing_all``: every record): the
    durable tier may already show them while the cache does not yet, so reads of them skip the
    cache. Otherwise one read could see a transaction's new durable value and the next read its
    old cached one: a torn multi-type write.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gen: int = 0
    users: int = 0
    writing: Touched = NOTHING
    writing_all: bool = False

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
    """The states of the sessions in use; a state is dropped when its last user leaves.

    ``by_addr`` is public to the engine's two hot paths (``Writes.write_keys``,
    ``Reads.get_blobs``), which enter and leave a state inline; everything else uses
    :meth:`use`.
    """

    __slots__ = ("by_addr", "lock_timeout")

    def __init__(self, lock_timeout: float | None = None) -> None:
        self.by_addr: dict[SessionAddr, SessionState] = {}
        # A write waits at most this long for the session's earlier writes (None: forever).
        self.lock_timeout = lock_timeout

    def __len__(self) -> int:
        return len(self.by_addr)

    async def lock(self, addr: SessionAddr, state: SessionState) -> None:
        """Take the session's write lock, within ``lock_timeout`` when it is busy."""
        try:
            async with asyncio.timeout(self.lock_timeout):
                await state.lock.acquire()
        except TimeoutError:
            raise UnavailableError(
                f"session {addr}: earlier writes still running after {self.lock_timeout}s"
            ) from None

    def leave(self, addr: SessionAddr, state: SessionState) -> None:
        """One user of the state is done; the last one drops it."""
        state.users -= 1
        if state.users == 0:
            del self.by_addr[addr]

    @asynccontextmanager
    async def use(
        self, addr: SessionAddr, *, write: bool = False, touched: Touched | None = NOTHING
    ) -> AsyncIterator[SessionState]:
        """Hold the session state; with ``write`` its lock too (``touched=None``: all records)."""
        state = self.by_addr.get(addr)
        if state is None:
            state = self.by_addr[addr] = SessionState()
        state.users += 1
        try:
            if not write:
                yield state
                return
            if state.lock.locked():
                await self.lock(addr, state)
            else:  # free: acquire() returns at once, no deadline needed
                await state.lock.acquire()
            try:
                state.gen += 1
                state.writing, state.writing_all = touched or NOTHING, touched is None
                try:
                    yield state
                finally:
                    state.writing, state.writing_all = NOTHING, False
                    state.gen += 1
            finally:
                state.lock.release()
        finally:
            self.leave(addr, state)
