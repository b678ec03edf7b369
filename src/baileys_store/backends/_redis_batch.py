"""Redis-only durable tier: the fence barrier and outbox batches applied at most once.

A mixin of :class:`~baileys_store.backends.redis.RedisDurable`. The last applied sequence is the
meta hash's ``s`` field, checked and set by the same script that writes the batch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .._model import CredsRecord, KeyWrite, SessionAddr
from ._redis_base import group_args, groups_of, reply_error
from ._redis_scripts import _PRELUDE

# KEYS: meta. ARGV: token. Reply {0} or {1, current}. A session without a meta hash keeps the
# token in its fence tombstone (and is not created).
ADVANCE_FENCE = (
    _PRELUDE
    + """
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cur = fence_now(KEYS[1], exists)
if tonumber(ARGV[1]) < tonumber(cur) then return {1, cur} end
if exists then redis.call('HSET', KEYS[1], 'f', ARGV[1])
else redis.call('SET', tomb(KEYS[1]), ARGV[1]) end
return {0}
"""
)

# KEYS: meta. ARGV: fence ('' = none), now. An empty write: fence check + updated time, only
# for a session that exists (a touch never creates one; a missing one checks its tombstone).
TOUCH = (
    _PRELUDE
    + """
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cur = tonumber(fence_now(KEYS[1], exists))
if ARGV[1] ~= '' and tonumber(ARGV[1]) < cur then return {1, cur} end
if not exists then return {0} end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'f', ARGV[1]) end
redis.call('HSET', KEYS[1], 'u', ARGV[2])
return {0}
"""
)

# KEYS: meta, types, then one hash per written type. ARGV: fence, now, may_create, seq,
# creds blob ('' = none), creds version, then the groups as in WRITE_KEYS.
# Reply {0, 1 applied / 0 skipped}, {1, fence}, {2} (index first), {4, key}.
APPLY_BATCH = (
    _PRELUDE
    + """
local meta, types = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', meta) == 1
if exists and tonumber(redis.call('HGET', meta, 's') or '0') >= tonumber(ARGV[4]) then
  return {0, 0}
end
local refused, fence = admit(meta, types, exists, ARGV[3], ARGV[1])
if refused then return refused end
local i = 7
for k = 3, #KEYS do
  redis.call('SADD', types, ARGV[i])
  i = apply_group(KEYS[k], i)
end
if ARGV[5] ~= '' then redis.call('HSET', meta, 'creds', ARGV[5], 'v', ARGV[6]) end
redis.call('HSET', meta, 'f', fence, 'u', ARGV[2], 's', ARGV[4])
if not exists then created(meta, ARGV[2]) end
return {0, 1}
"""
)


class RedisBatchMixin:
    """``advance_fence`` and ``apply_batch`` for the Redis-only durable tier."""

    if TYPE_CHECKING:  # provided by RedisDurable

        def _base(self, addr: SessionAddr) -> str: ...

        async def _eval(
            self, op: str, source: str, keys: list[str], args: list[Any]
        ) -> list[Any]: ...

        async def _creating(
            self,
            op: str,
            source: str,
            addr: SessionAddr,
            keys: list[str],
            *,
            fence: int | None,
            args: list[Any],
            expected: int | None = None,
        ) -> list[Any]: ...

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        reply = await self._eval("fence", ADVANCE_FENCE, [self._base(addr) + "m"], [token])
        reply_error(addr, reply, token, None)

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order (one ``HKEYS`` per type)."""
        base = self._base(addr)
        types: Any = await self._eval(
            "list keys", "return redis.call('SMEMBERS', KEYS[1])", [base + "t"], []
        )
        for key_type in sorted(t.decode() if isinstance(t, bytes) else str(t) for t in types):
            ids: Any = await self._eval(
                "list keys", "return redis.call('HKEYS', KEYS[1])", [base + "k:" + key_type], []
            )
            for key_id in sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids):
                yield key_type, key_id

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys (one script)."""
        base = self._base(addr)
        source = """
local out = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = t
  out[#out + 1] = redis.call('HLEN', ARGV[1] .. t)
end
return out
"""
        flat: Any = await self._eval("count keys", source, [base + "t"], [base + "k:"])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return {
            (t.decode() if isinstance(t, bytes) else str(t)): int(n) for t, n in pairs if int(n) > 0
        }

    async def touch(self, addr: SessionAddr, fence: int | None) -> None:
        """An empty write: record the fence and the time on an existing session."""
        args = ["" if fence is None else str(fence), f"{time.time():.6f}"]
        reply = await self._eval("touch", TOUCH, [self._base(addr) + "m"], args)
        reply_error(addr, reply, fence, None)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """One script: sequence check, fence check, keys, creds and the new sequence."""
        base, groups = self._base(addr), groups_of(writes)
        keys = [base + "m", base + "t", *(base + "k:" + t for t in groups)]
        blob, version = (creds.blob, creds.version) if creds else (b"", 0)
        args: list[Any] = [seq, blob, version, *group_args(groups)]
        reply = await self._creating("apply_batch", APPLY_BATCH, addr, keys, fence=fence, args=args)
        return bool(int(reply[1]))
