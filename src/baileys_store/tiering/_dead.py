"""Retrying dead letters: back into the outbox, without rolling anything back.

An entry is dead-lettered after ``outbox_max_attempts`` failed applies; later entries of the
session go on being applied, so some of its records may have been replaced since. Re-applying
them blindly would roll those back. The cache knows: while a session has dead letters it keeps
serving their values (no TTL, tombstones kept), so a dead record whose value the cache still
holds is current and goes back into the outbox, behind what is pending; the others are dropped
(see :meth:`RedisHybridCache.requeue_dead`).

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
from ._writes import Engine


async def retry_dead_letters(engine: Engine, addr: SessionAddr) -> DeadLetterRetry:
    """Requeue the session's dead letters that are still current (module doc)."""
    shared = engine.shared
    if shared is None or engine.drain is None:
        raise ConfigError("this store has no outbox: it needs a redis:// cache")
    async with engine.states.use(addr, write=True, touched=None):
        try:
            lease = await engine._lease(addr, write=True)
        except LeaseHeldError:
            if not engine.write_behind:
                raise
            lease = None
        token = lease.token if lease else None
        fence = lease.fence() if lease else None
        done = await engine._fenced(
            addr,
            engine.guard(
                "cache", "requeue_dead", lambda: shared.requeue_dead(addr, token=token, fence=fence)
            ),
        )
        if done.seq:
            engine.appended(addr, done.seq)
        return done
