"""Dead letters back into the outbox, keeping only the records that are still current.

A dead record goes back only while the cache still holds exactly its value (the cache keeps a
session's values, tombstones included, while it has dead letters): then no later write replaced
it, and applying it after the entries already pending cannot roll anything back. The rest are
dropped and counted in ``superseded``. The script (``lua/requeue_dead.lua``) checks again
atomically; a change in between (a new dead letter) means reading again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr, coalesce
from ...results import DeadLetterRetry
from . import _scripts as lua
from ._outbox import entry_body
from ._scripts import check_reply, token_arg

if TYPE_CHECKING:
    from ._cache import RedisCache

_ROUNDS = 5  # reads of the dead letters before giving up (each a new dead letter raced in)


async def requeue_dead(
    cache: RedisCache, addr: SessionAddr, *, token: int | None, fence: int | None
) -> DeadLetterRetry:
    """Put the session's dead letters back into ``cache``'s outbox (see the module doc)."""
    base, outbox = cache.runner.base(addr), cache.outbox
    for _ in range(_ROUNDS):
        letters = await outbox.dead_letters(addr)
        if not letters:
            await outbox.forget_dead(addr)
            return DeadLetterRetry(0, 0, 0, 0)
        writes, creds = coalesce(letter.entry for letter in letters)
        by_type, kept_creds = await _current(cache, addr, writes, creds)
        keep = [w for ws in by_type.values() for w in ws]
        checks: list[Any] = []
        for ws in by_type.values():
            checks += [len(ws), *(x for w in ws for x in (w.id, w.blob or b""))]
        keys = [base + "b", base + "m", base + "o", base + "d", *(base + "k:" + t for t in by_type)]
        args = [
            token_arg(token),
            int(time.time() * 1000),
            len(letters),
            entry_body(keep, fence) if keep else "",
            kept_creds.blob if kept_creds else "",
            str(kept_creds.version) if kept_creds else "",
            fence or 0,
            *checks,
        ]
        appends = bool(keep) or kept_creds is not None
        reply = await (
            cache.appending("requeue", addr, "requeue_dead", keys, args)
            if appends
            else cache.runner.eval("requeue", "requeue_dead", keys, args)
        )
        if check_reply(addr, reply, token) == lua.CONFLICT:
            continue
        await outbox.forget_dead(addr)
        total = len(writes) + (creds is not None)
        records = len(keep) + (kept_creds is not None)
        return DeadLetterRetry(
            len(letters), records, total - records, int(reply[1]) if appends else 0
        )
    raise errors.UnavailableError(f"session {addr}: dead letters kept changing; try again")


async def _current(
    cache: RedisCache, addr: SessionAddr, writes: list[KeyWrite], creds: CredsRecord | None
) -> tuple[dict[str, list[KeyWrite]], CredsRecord | None]:
    """The writes whose value the cache still holds, by type; ``creds`` if it holds them."""
    base, client = cache.runner.base(addr), cache.runner.client
    by_type: dict[str, list[KeyWrite]] = {}
    for w in writes:
        by_type.setdefault(w.type, []).append(w)

    async def run() -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for key_type, ws in by_type.items():
                pipe.hmget(base + "k:" + key_type, [w.id for w in ws])
            pipe.hmget(base + "m", ["creds", "v"])
            return list(await pipe.execute())

    replies = await cache.runner.run("outbox", run)
    kept: dict[str, list[KeyWrite]] = {}
    for (key_type, ws), got in zip(by_type.items(), replies, strict=False):
        if same := [w for w, v in zip(ws, got, strict=True) if v == (w.blob or b"")]:
            kept[key_type] = same
    row = replies[-1]
    held = creds is not None and row[0] == creds.blob and row[1] == str(creds.version).encode()
    return kept, creds if held else None
