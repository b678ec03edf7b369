"""Session leases on Redis (both tiers): one Lua script each for acquire, renew, release.

Keys (the session's hash tag, so one Cluster slot): ``<base>l`` hash ``o`` owner, ``t`` token,
with a PEXPIRE of the lease TTL; ``<base>b`` bookkeeping hash that never expires, ``f`` = the
last token issued (so tokens only grow, across expiry, release and session deletes). On the
durable tier a new token is also floored on the session's durable fence (its meta hash's, or
its fence tombstone ``<base>f`` when the session has no row).

On the cache tier a new token also drops what the session has cached — a previous holder may
have left entries stale after a failed update — unless write-behind entries are pending there
(``os > oa`` in ``<base>b``) or dead letters are held (``dl``): then the cache holds the only
copy and is kept.

With replica acknowledgements (``replica_acks`` > 0, the cache tier) each of the three scripts
is followed by ``WAIT`` in the same round trip (see :mod:`._acks`): a lease change that too few
replicas acknowledged raises :class:`~baileys_store.errors.UnavailableError`, so a promoted
replica never hands out a token this holder already got, nor forgets a release.
"""

from __future__ import annotations

from typing import Any

from ..._model import SessionAddr
from ...contracts import LeaseBackend
from ._acks import acks_of, eval_acked
from ._client import ScriptRunner


class RedisLeases(LeaseBackend):
    """The leases of one Redis tier (``resets_cache``: the cache tier, see the module doc)."""

    def __init__(self, runner: ScriptRunner, *, resets_cache: bool) -> None:
        self._runner = runner
        self._reset = "1" if resets_cache else "0"
        self._acks = acks_of(runner)

    async def _eval(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._acks is None:  # no replica acks: the plain script call, nothing added
            return await self._runner.eval(name, name, keys, args)
        return await eval_acked(self._runner, self._acks, name, keys, args)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if free, expired or ``owner``'s; a new, higher token (or None)."""
        base = self._runner.base(addr)
        keys = [base + "l", base + "b", base + "m", base + "t", base + "f"]
        args = [owner, ttl_ms, floor, self._reset, base + "k:"]
        reply = await self._eval("acquire_lease", keys, args)
        return int(reply[1]) if int(reply[0]) == 1 else None

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it with ``token``."""
        keys = [self._runner.base(addr) + "l"]
        reply: Any = await self._eval("renew_lease", keys, [owner, token, ttl_ms])
        return int(reply) == 1

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        keys = [self._runner.base(addr) + "l"]
        reply: Any = await self._eval("release_lease", keys, [owner, token])
        return int(reply) == 1
