"""Noticing a Redis cache that lost its data (``FLUSHALL``, a restart without persistence).

In write-behind mode Redis holds acknowledged writes until the outbox worker drains them; losing
them is the documented RPO, but the store must *notice*, not serve older values as current. When
a store binds the prefix it also sets ``<prefix>:epoch`` to a random value and remembers it. A
reset is detected on the hot path, where the store touches Redis anyway:

- every write-behind call reads the epoch in its own round trip (after its script);
- a read that reaches Redis for a session this process has entries pending for
  (``Engine.behind``) checks the write stamp the read script returns anyway: every append
  bumps it, so 0 means the session's bookkeeping is gone (no extra round trip; a read L1
  answers entirely serves the acknowledged value and needs no check);
- the worker's idle round and ``check()`` read the epoch.

On detection: L1 is emptied, an error is logged, ``data_loss`` is counted, the sessions with
entries pending in this process are marked lost (every operation on them but ``delete`` raises
:class:`~baileys_store.errors.DataLossError` until :meth:`AuthStore.acknowledge_data_loss` or a
delete), ``check()`` reports ``degraded`` while any is marked, and the prefix is bound again (the
durable binding marker and a new epoch), so the store keeps working. Sessions with nothing
pending read the durable tier, which has all they had. Entries another process had pending are
noticed by that process; losses while no process runs are not detected (use Redis persistence).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .._model import CredsRecord, KeyWrite, SessionAddr
from ..errors import DataLossError
from ._guard import Guard
from ._lease import Lease
from ._writes import Engine

if TYPE_CHECKING:
    from ..backends.memory import MemoryCache
    from ..observability._metrics import Metrics

log = logging.getLogger("baileys_store.tiers")


class EpochCache(Protocol):
    """What the watch needs from the Redis cache (the hybrid cache: the outbox and binding)."""

    epoch: str | None
    epoch_changed: bool

    async def bind_durable(self, store_id: str) -> None: ...
    async def bind_epoch(self, candidate: str) -> str: ...
    async def current_epoch(self) -> str | None: ...


class ResetWatch:
    """Detects a cache reset and keeps the sessions it may have cost data (see module doc)."""

    def __init__(
        self,
        cache: EpochCache,
        *,
        durable: object,
        guard: Guard,
        metrics: Metrics,
        behind: dict[SessionAddr, int],
        l1: MemoryCache | None,
    ) -> None:
        self.cache, self.durable, self.guard, self.metrics = cache, durable, guard, metrics
        self.behind, self.l1 = behind, l1
        self.lost: set[SessionAddr] = set()
        self.resets = 0
        self._lock = asyncio.Lock()
        self._rebinding = False

    async def bind(self) -> None:
        """Bind the prefix: the durable tier's marker (ConfigError if another's), the epoch."""
        cache = self.cache
        store_id: str = getattr(self.durable, "store_id", "")  # known once the tier is open
        if store_id:
            await self.guard("cache", "bind_durable", lambda: cache.bind_durable(store_id))
        await self.guard("cache", "bind_durable", lambda: cache.bind_epoch(secrets.token_hex(8)))

    def check(self, addr: SessionAddr) -> None:
        """Raise :class:`DataLossError` for a session marked lost."""
        if addr in self.lost:
            raise DataLossError(
                f"session {addr}: the Redis cache lost write-behind entries acknowledged by "
                "this process; its durable state is the last drained one. Check it, then call "
                "acknowledge_data_loss() (or delete the session)"
            )

    def acknowledge(self, addr: SessionAddr) -> bool:
        """Clear the session's mark; False when it had none."""
        if addr in self.lost:
            self.lost.discard(addr)
            return True
        return False

    async def after_write(self) -> None:
        """After a write-behind call: handle a reset its round trip noticed."""
        if self.cache.epoch_changed:
            await self.reset()

    async def verify(self, addr: SessionAddr) -> None:
        """After a read: handle a reset it noticed (a stamp of 0, see ``saw_stamp``)."""
        if self.cache.epoch_changed:
            await self.reset()
        self.check(addr)

    async def poll(self) -> None:
        """Read the epoch (worker idle rounds, ``check()``) and handle a reset."""
        cache = self.cache
        if cache.epoch is None:
            return
        await self.guard("cache", "outbox_counters", cache.current_epoch)
        await self.after_write()

    async def reset(self) -> None:
        """The cache lost its data: mark the sessions at risk, drop L1, bind the prefix again."""
        async with self._lock:
            if not self.cache.epoch_changed:
                return  # another task handled it
            if not self._rebinding:  # a bind that failed is retried without marking again
                await self._mark()
                self._rebinding = True
            await self.bind()
            self._rebinding = False

    async def _mark(self) -> None:
        at_risk = set(self.behind)
        self.lost |= at_risk
        for addr in at_risk:
            self.behind.pop(addr, None)
        if self.l1 is not None:
            await self.l1.close()  # empties it: it may hold values Redis no longer has
        self.resets += 1
        self.metrics.data_loss()
        log.error(
            "redis cache lost its data (epoch changed); %d session(s) with write-behind "
            "entries pending here are marked lost until acknowledged",
            len(at_risk),
            extra={"event": "cache_data_loss", "sessions": len(at_risk)},
        )


class WatchedEngine(Engine):
    """The engine of a store with an outbox: every operation consults the :class:`ResetWatch`."""

    watch: ResetWatch | None = None

    async def get_blobs(self, addr: SessionAddr, key_type: str, ids: list[str]) -> dict[str, bytes]:
        """:meth:`Engine.get_blobs`, refused for a lost session, verified when pending here."""
        watch = self.watch
        if watch is None:
            return await super().get_blobs(addr, key_type, ids)
        watch.check(addr)
        found = await super().get_blobs(addr, key_type, ids)
        await watch.verify(addr)
        return found

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """:meth:`Engine.load_creds`, refused for a lost session, verified when pending here."""
        watch = self.watch
        if watch is None:
            return await super().load_creds(addr)
        watch.check(addr)
        record = await super().load_creds(addr)
        await watch.verify(addr)
        return record

    async def write_keys(self, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
        """:meth:`Engine.write_keys`, refused for a lost session."""
        if self.watch is not None:
            self.watch.check(addr)
        await super().write_keys(addr, writes)

    async def save_creds(self, addr: SessionAddr, blob: bytes, expected: int | None) -> int:
        """:meth:`Engine.save_creds`, refused for a lost session."""
        if self.watch is not None:
            self.watch.check(addr)
        return await super().save_creds(addr, blob, expected)

    async def clear_keys(self, addr: SessionAddr) -> None:
        """:meth:`Engine.clear_keys`, refused for a lost session."""
        if self.watch is not None:
            self.watch.check(addr)
        await super().clear_keys(addr)

    async def delete_session(self, addr: SessionAddr) -> bool:
        """:meth:`Engine.delete_session`; a deleted session is no longer marked lost."""
        existed = await super().delete_session(addr)
        if self.watch is not None:
            self.watch.acknowledge(addr)
        return existed

    async def refresh_behind(self) -> None:
        """The worker's idle round: look for a reset, then forget drained sessions."""
        if self.watch is not None:
            await self.watch.poll()
        await super().refresh_behind()

    async def _behind_keys(
        self, addr: SessionAddr, lease: Lease | None, writes: Sequence[KeyWrite]
    ) -> None:
        had = addr in self.behind
        await super()._behind_keys(addr, lease, writes)
        await self._after_append(addr, had)

    async def _behind_creds(
        self, addr: SessionAddr, lease: Lease | None, blob: bytes, expected: int | None
    ) -> int:
        had = addr in self.behind
        version = await super()._behind_creds(addr, lease, blob, expected)
        await self._after_append(addr, had)
        return version

    async def _after_append(self, addr: SessionAddr, had: bool) -> None:
        """A reset seen by the append: this entry is kept (re-sequenced), earlier ones lost."""
        watch = self.watch
        if watch is None or not watch.cache.epoch_changed:
            return
        seq = None if had else self.behind.get(addr)
        await watch.reset()
        if seq is not None:  # nothing was pending before this write: nothing of it was lost
            watch.lost.discard(addr)
            self.behind[addr] = max(self.behind.get(addr, 0), seq)
        watch.check(addr)
