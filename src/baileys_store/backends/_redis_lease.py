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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._model import SessionAddr
from ._redis_hybrid_scripts import _HYBRID

# KEYS: l, b, m, t, f (the durable fence tombstone). ARGV: owner, ttl_ms, floor, reset_cache
# (0/1), key base. Reply {1, token} or {0, pttl} when another owner holds it.
ACQUIRE = (
    _HYBRID
    + """
local l, b, m, types = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holder = redis.call('HGET', l, 'o')
if holder and holder ~= ARGV[1] then return {0, redis.call('PTTL', l)} end
local token = tonumber(redis.call('HGET', b, 'f') or '0')
token = math.max(token, tonumber(ARGV[3]))
if ARGV[4] == '0' then
  -- the durable fence is (token << 32) | counter; a session without a row has a tombstone
  local fence = redis.call('GET', KEYS[5]) or '0'
  if redis.call('TYPE', m)['ok'] == 'hash' then fence = redis.call('HGET', m, 'f') or '0' end
  token = math.max(token, math.floor(tonumber(fence) / 4294967296))
end
token = token + 1
redis.call('HSET', b, 'f', token)
redis.call('HSET', l, 'o', ARGV[1], 't', token)
redis.call('PEXPIRE', l, ARGV[2])
if ARGV[4] == '1' and not held(b) then evict(m, types, ARGV[5]) end
return {1, token}
"""
)

# KEYS: l. ARGV: owner, token, ttl_ms.
RENEW = """
local r = redis.call('HMGET', KEYS[1], 'o', 't')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: l. ARGV: owner, token.
RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'o', 't')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisLeaseMixin:
    """:class:`~baileys_store.backends.base.LeaseBackend` for a Redis backend.

    Needs the host class's ``_base(addr)`` and ``_eval(op, source, keys, args)``.
    """

    _lease_resets_cache = False

    if TYPE_CHECKING:  # provided by the Redis backend class this is mixed into

        def _base(self, addr: SessionAddr) -> str: ...

        async def _eval(
            self, op: str, source: str, keys: list[str], args: list[Any]
        ) -> list[Any]: ...

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease if free, expired or ``owner``'s; a new, higher token (or None)."""
        base = self._base(addr)
        keys = [base + "l", base + "b", base + "m", base + "t", base + "f"]
        args = [owner, ttl_ms, floor, "1" if self._lease_resets_cache else "0", base + "k:"]
        reply = await self._eval("acquire_lease", ACQUIRE, keys, args)
        return int(reply[1]) if int(reply[0]) == 1 else None

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it with ``token``."""
        reply: Any = await self._eval(
            "renew_lease", RENEW, [self._base(addr) + "l"], [owner, token, ttl_ms]
        )
        return int(reply) == 1

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        reply: Any = await self._eval(
            "release_lease", RELEASE, [self._base(addr) + "l"], [owner, token]
        )
        return int(reply) == 1
