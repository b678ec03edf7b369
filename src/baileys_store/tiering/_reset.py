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
- the worker's idle round and ``check()`` read the epoch;
- a new master era (a Sentinel failover, a restart from an older file: see
  ``baileys_store.backends.redis._era``), noticed when a connection to the new master opens,
  counts as a reset when ``cache_replica_acks`` is 0 (asynchronous replication may have lost
  the last entries); with replica acks every acknowledged entry was on a replica first, so
  nothing is marked. A new era with nothing pending here is logged, not counted as a loss.

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
from typing import TYPE_CHECKING

from .._model import SessionAddr
from ..contracts import DurableBackend, SharedCache
from ..errors import DataLossError
from ..resilience import Guard

if TYPE_CHECKING:
    from ..backends.memory import MemoryCache
    from ..observability._metrics import Metrics

log = logging.getLogger("baileys_store.tiers")


class ResetWatch:
    """Detects a cache reset and keeps the sessions it may have cost data (see module doc)."""

    def __init__(
        self,
        cache: SharedCache,
        *,
        durable: DurableBackend,
        guard: Guard,
        metrics: Metrics,
        behind: dict[SessionAddr, int],
        l1: MemoryCache | None,
    ) -> None:
        self.cache, self.durable, self.guard, self.metrics = cache, durable, guard, metrics
        self.behind, self.l1 = behind, l1
        self.lost: set[SessionAddr] = set()
        self.resets = 0
        self.stamp_lost = False  # a read saw stamp 0 for a session with entries pending here
        self._lock = asyncio.Lock()
        self._rebinding = False

    async def bind(self) -> None:
        """Bind the prefix: the durable tier's marker (ConfigError if another's), the epoch."""
        cache = self.cache
        store_id = self.durable.store_id  # known once the tier is open
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

    @property
    def changed(self) -> bool:
        """True when a call noticed a reset (another epoch, or a lost session stamp)."""
        return self.cache.epoch_changed or self.stamp_lost

    def saw_stamp(self, addr: SessionAddr, stamp: int) -> None:
        """A read's write stamp: 0 for a session with entries pending here means a data loss.

        Every write-behind append bumps the stamp (never reset but by a loss), so a session in
        ``behind`` (entries this process appended, not yet drained) that reads stamp 0 has lost
        its bookkeeping, and with it the entries.
        """
        if stamp == 0 and addr in self.behind:
            self.stamp_lost = True

    async def after_write(self) -> None:
        """After a write-behind call: handle a reset its round trip noticed."""
        if self.changed:
            await self.reset()

    async def verify(self, addr: SessionAddr) -> None:
        """After a read: handle a reset it noticed (a stamp of 0, see :meth:`saw_stamp`)."""
        if self.changed:
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
            if not self.changed:
                return  # another task handled it
            if not self._rebinding:  # a bind that failed is retried without marking again
                await self._mark()
                self._rebinding = True
            await self.bind()
            self.stamp_lost = False
            self._rebinding = False

    async def _mark(self) -> None:
        at_risk = set(self.behind)
        self.lost |= at_risk
        for addr in at_risk:
            self.behind.pop(addr, None)
        if self.l1 is not None:
            await self.l1.close()  # empties it: it may hold values Redis no longer has
        if getattr(self.cache, "master_changed", False) and not at_risk:
            # A failover or restart with nothing pending here: no acknowledged write of this
            # process can be missing (the cache scripts evict another era's entries).
            log.warning(
                "redis cache master changed (failover or restart); no write-behind entries "
                "were pending here",
                extra={"event": "cache_master_changed", "sessions": 0},
            )
            return
        self.resets += 1
        self.metrics.data_loss()
        log.error(
            "redis cache lost its data (epoch changed, or the master changed without replica "
            "acks); %d session(s) with write-behind entries pending here are marked lost "
            "until acknowledged",
            len(at_risk),
            extra={"event": "cache_data_loss", "sessions": len(at_risk)},
        )
