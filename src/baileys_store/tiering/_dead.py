"""Retrying dead letters: back into the outbox, without rolling anything back.

An entry is dead-lettered after ``outbox_max_attempts`` failed applies; later entries of the
session go on being applied, so some of its records may have been replaced since. Re-applying
them blindly would roll those back. The cache knows: while a session has dead letters it keeps
serving their values (no TTL, tombstones kept), so a dead record whose value the cache still
holds is current and goes back into the outbox, behind what is pending; the others are dropped
(see ``SharedCache.requeue_dead``).

Who may run it: the session's lease holder. In write-behind mode every write of the owner
goes through the same Redis scripts, atomically with the requeue, so it may also run while
another process holds the lease (the operator's CLI next to a live service); in write-through
mode the owner writes the durable tier directly, so a session held elsewhere raises
:class:`LeaseHeldError`.
"""

from __future__ import annotations

from .._model import SessionAddr
from ..errors import ConfigError, LeaseHeldError
from ..results import DeadLetterRetry
from ._tiers import Tiers
from ._write import Writes


async def retry_dead_letters(tiers: Tiers, writes: Writes, addr: SessionAddr) -> DeadLetterRetry:
    """Requeue the session's dead letters that are still current (module doc)."""
    shared = tiers.shared
    if shared is None or writes.worker is None:
        raise ConfigError("this store has no outbox: it needs a redis:// cache")
    async with tiers.states.use(addr, write=True, touched=None):
        try:
            lease = await tiers.lease(addr, write=True)
        except LeaseHeldError:
            if not tiers.write_behind:
                raise
            lease = None
        token = lease.token if lease else None
        fence = lease.fence() if lease else None
        done = await tiers.fenced(
            addr,
            tiers.guard(
                "cache", "requeue_dead", lambda: shared.requeue_dead(addr, token=token, fence=fence)
            ),
        )
        if done.seq:
            writes.appended(addr, done.seq)
        return done
