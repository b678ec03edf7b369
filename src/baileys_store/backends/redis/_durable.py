"""The Redis-only durable tier (no TTL anywhere): keys, creds, fences, sessions, outbox batches.

Layout and trade-offs: see the package doc. The last applied outbox sequence is the meta hash's
``s`` field, checked and set by the same script that writes the batch.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import DurableBackend, LeaseBackend
from ...results import SessionInfo, TierHealth
from . import _scripts as lua
from ._client import ID_CHUNK, ScriptRunner, era_tokens
from ._index import SessionIndex
from ._leases import RedisLeases
from ._prefix import DURABLE, claim_role
from ._scripts import group_args, groups_of, reply_error
from ._url import RedisOptions

SCHEMA_VERSION = 1


class RedisDurable(DurableBackend, LeaseBackend):
    """Redis-only durable tier (no TTL anywhere). See the package doc for the layout.

    Args:
        options: The parsed ``redis://`` URL.
        on_retry: Called before each retry of a transient error (the store counts them).
    """

    name = "redis"
    tier = "durable"
    # redis-py cancels a call in place (the connection is dropped, no request to the server),
    # so the store's deadline cancels it directly instead of abandoning it to a task.
    cancels_promptly = True

    def __init__(
        self, options: RedisOptions, *, on_retry: Callable[[], None] | None = None
    ) -> None:
        self.options = options
        self.store_id = ""  # known once open (see contracts.DurableBackend)
        self.runner = ScriptRunner(options, tier="durable", on_retry=on_retry)
        self._index = SessionIndex(self.runner)
        self._leases = RedisLeases(self.runner, resets_cache=False)

    async def open(self) -> None:
        """Connect, claim the prefix, record the schema version (refuse a newer one).

        Raises:
            ConfigError: the prefix holds a hybrid store's cache (see :mod:`._prefix`).
        """
        await self.runner.open()
        try:
            await claim_role(self.runner, DURABLE)
            await self._schema()
            # Who this database is, so a Redis cache in front can refuse a second database.
            self.store_id = await self.bind_meta("store_id", secrets.token_hex(8))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every connection; idempotent."""
        await self.runner.close()

    async def check(self) -> TierHealth:
        """One ``PING`` and the eviction policy (see :meth:`ScriptRunner.check`)."""
        return await self.runner.check()

    async def _schema(self) -> None:
        key, client = f"{self.runner.prefix}:schema", self.runner.client
        await self.runner.run("open", lambda: client.set(key, SCHEMA_VERSION, nx=True))
        found: Any = await self.runner.run("open", lambda: client.get(key))
        if int(found or 0) > SCHEMA_VERSION:
            raise errors.UnavailableError(
                f"redis data schema {int(found)} is newer than this baileys-store"
            )

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """``HSETNX`` (``HSET`` with ``replace``) on ``<prefix>:meta``, then the stored value."""
        keys, args = [f"{self.runner.prefix}:meta"], [name, value, "1" if replace else ""]
        reply: Any = await self.runner.eval("bind_meta", "bind_meta", keys, args)
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def _creating(
        self,
        op: str,
        script: str,
        addr: SessionAddr,
        keys: list[str],
        *,
        fence: int | None,
        args: list[Any],
        expected: int | None = None,
    ) -> list[Any]:
        """Run a script that may create the session; index the session before it exists.

        A large call indexes first: shipping its arguments to a script that only answers
        "needs index" would hold Redis twice (~80 ms of a 200k-id write's ~230 ms).
        """
        head = ["" if fence is None else str(fence), f"{time.time():.6f}"]
        first = len(args) > 2 * ID_CHUNK
        if first:
            await self._index.add(addr)
        reply = await self.runner.eval(op, script, keys, [*head, "1" if first else "0", *args])
        if int(reply[0]) == lua.NEEDS_INDEX:
            await self._index.add(addr)
            reply = await self.runner.eval(op, script, keys, [*head, "1", *args])
            first = True
        if first and int(reply[0]) == lua.OK:  # again: a delete may have dropped the entry
            await self._index.add(addr)
        reply_error(addr, reply, fence, expected)
        return list(reply)

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One ``HMGET`` per 5,000 ids (so a call for more is not one snapshot)."""
        key = self.runner.base(addr) + "k:" + key_type
        found: dict[str, bytes] = {}
        for lo in range(0, len(ids), ID_CHUNK):
            part = list(ids[lo : lo + ID_CHUNK])
            values: list[Any] = await self.runner.command("get_keys", "HMGET", key, *part)
            found.update((i, v) for i, v in zip(part, values, strict=True) if v is not None)
        return found

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """One Lua script: fence check, then every upsert and delete."""
        if not writes:  # an empty write (a touch) updates an existing session only
            await self.touch(addr, fence)
            return
        base, groups = self.runner.base(addr), groups_of(writes)
        keys = [base + "m", base + "t", *(base + "k:" + t for t in groups)]
        args = group_args(groups)
        await self._creating("write_keys", "write_keys", addr, keys, fence=fence, args=args)

    async def touch(self, addr: SessionAddr, fence: int | None) -> None:
        """An empty write: record the fence and the time on an existing session."""
        args = ["" if fence is None else str(fence), f"{time.time():.6f}"]
        reply = await self.runner.eval("touch", "touch", [self.runner.base(addr) + "m"], args)
        reply_error(addr, reply, fence, None)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """Drop every type hash named in the session's type set."""
        base = self.runner.base(addr)
        head = ["" if fence is None else str(fence), f"{time.time():.6f}", base + "k:"]
        keys = [base + "m", base + "t"]
        reply = await self.runner.eval("clear_keys", "clear_keys", keys, head)
        reply_error(addr, reply, fence, None)
        return int(reply[1])

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """``HMGET creds v`` on the session's meta hash."""
        key = self.runner.base(addr) + "m"
        row: list[Any] = await self.runner.command("load_creds", "HMGET", key, "creds", "v")
        blob, version = row
        if blob is None:
            return None
        try:
            return CredsRecord(bytes(blob), int(version))
        except (TypeError, ValueError):
            msg = f"redis: creds of session {addr} have no valid version"
            raise errors.CorruptDataError(msg) from None

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set in one Lua script."""
        keys = [self.runner.base(addr) + "m"]
        exp = "" if expected_version is None else str(expected_version)
        reply = await self._creating(
            "save_creds",
            "save_creds",
            addr,
            keys,
            fence=fence,
            args=[blob, exp],
            expected=expected_version,
        )
        return int(reply[1])

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Delete the session's keys atomically, then its index entry (re-added if recreated)."""
        base, client = self.runner.base(addr), self.runner.client
        keys, args = [base + "m", base + "t"], ["" if fence is None else str(fence), base + "k:"]
        reply = await self.runner.eval("delete_session", "delete_session", keys, args)
        reply_error(addr, reply, fence, None)
        await self._index.remove(addr)
        if await self.runner.run("delete_session", lambda: client.exists(base + "m")):
            await self._index.add(addr)
        return bool(int(reply[1]))

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Pages of the session index, each checked against the sessions' meta hashes."""
        return self._index.sessions(namespace)

    async def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session in order (one ``HKEYS`` per type)."""
        base = self.runner.base(addr)
        types: Any = await self.runner.eval("list keys", "key_types", [base + "t"], [])
        for key_type in sorted(t.decode() if isinstance(t, bytes) else str(t) for t in types):
            ids: Any = await self.runner.eval("list keys", "key_ids", [base + "k:" + key_type], [])
            for key_id in sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids):
                yield key_type, key_id

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys (one script)."""
        base = self.runner.base(addr)
        flat: Any = await self.runner.eval("count keys", "count_keys", [base + "t"], [base + "k:"])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return {
            (t.decode() if isinstance(t, bytes) else str(t)): int(n) for t, n in pairs if int(n) > 0
        }

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
        keys = [self.runner.base(addr) + "m"]
        reply = await self.runner.eval("fence", "advance_fence", keys, [token])
        reply_error(addr, reply, token, None)

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
        base, groups = self.runner.base(addr), groups_of(writes)
        keys = [base + "m", base + "t", *(base + "k:" + t for t in groups)]
        blob, version = (creds.blob, creds.version) if creds else (b"", 0)
        args: list[Any] = [seq, blob, version, *group_args(groups)]
        reply = await self._creating(
            "apply_batch", "apply_batch", addr, keys, fence=fence, args=args
        )
        return bool(int(reply[1]))

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """Take the lease (see :class:`~._leases.RedisLeases`).

        The first acquisition in a new master era raises the session's tokens first (see
        ``lua/era_tokens.lua``): the fence in the meta hash may have rolled back with the data.
        """
        await era_tokens(self.runner, addr)
        return await self._leases.acquire_lease(addr, owner, ttl_ms, floor=floor)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it with ``token``."""
        return await self._leases.renew_lease(addr, owner, token, ttl_ms)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token``."""
        return await self._leases.release_lease(addr, owner, token)
