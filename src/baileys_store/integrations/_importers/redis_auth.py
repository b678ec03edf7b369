"""Import from npm ``baileys-redis-auth`` (hbinduni/baileys-redis-auth, ``src/index.ts``).

What that package writes (read from its published source, v1.0.x, ioredis):

* ``useRedisAuthStateWithHSet(opts, prefix='session')`` — ``--layout hset``: one Redis hash
  ``{prefix}:auth`` per session; field ``creds`` holds the creds, field ``{type}-{fixed id}`` each
  key (``HSET``; a falsy value is ``HDEL``-ed).
* ``useRedisAuthState(opts, prefix='session')`` — ``--layout keys``: one string key per item,
  ``{prefix}:creds`` and ``{prefix}:{type}-{fixed id}`` (``SET``; falsy value: ``DEL``).

Both serialize every value with ``JSON.stringify(value, BufferJSON.replacer)`` (Buffers as
``{"type":"Buffer","data":"<base64>"}``) and read with ``BufferJSON.reviver``; ids pass through
``fixFileName`` (``/`` → ``__``, ``:`` → ``-``) exactly like Baileys' multi-file folder names, so
names are decoded with the folder importer's :class:`KeyNameParser` (only known key types, ids
of the shape their type has). Every key type Baileys sets is stored (all values are JSON).
``app-state-sync-key`` values are the protobuf's JSON form (its reader revives them with
``fromObject``): kept in that form, as the folder importer does. The session name is the
``prefix``. In the ``keys`` layout, names under ``{prefix}:`` that still contain ``:`` belong
to another prefix (``fixFileName`` leaves none) and are not part of the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ...errors import InvalidInputError, UnavailableError
from .._bufferjson import loads
from .._folder_names import KeyNameParser
from ._clients import as_bytes, open_redis
from ._core import LAYOUTS, ForeignSession, Layout, check_creds, unknown_names_error

if TYPE_CHECKING:
    from redis.asyncio import Redis

_SCAN = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{where}: not UTF-8 text") from None


class RedisAuthSource:
    """A ``baileys-redis-auth`` Redis, read with ``SCAN``/``HGETALL``/``MGET`` only."""

    def __init__(self, client: Redis, layout: Layout) -> None:
        self._redis = client
        self._layout = layout
        self._names = KeyNameParser()

    @classmethod
    async def open(cls, url: str, layout: Layout) -> RedisAuthSource:
        """Connect to ``url`` (``redis://HOST:PORT/DB``)."""
        if layout not in LAYOUTS:
            raise InvalidInputError(f"--layout must be hset or keys, not {layout!r}")
        return cls(await open_redis(url, "baileys-redis-auth"), layout)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._redis.aclose()

    async def sessions(self) -> list[str]:
        """Prefixes with creds: ``*:auth`` hashes with a ``creds`` field, or ``*:creds`` keys."""
        suffix = ":auth" if self._layout == "hset" else ":creds"
        found: list[str] = []
        try:
            async for raw in self._redis.scan_iter(match="*" + suffix, count=_SCAN):
                key = bytes(raw).decode("utf-8", "replace")
                if self._layout == "hset":
                    if await self._redis.type(raw) != b"hash":
                        continue
                    if not await self._redis.hexists(raw, "creds"):
                        continue
                elif await self._redis.type(raw) != b"string":
                    continue
                found.append(key[: -len(suffix)])
        except RedisError as exc:
            raise UnavailableError(f"source Redis: {exc}") from None
        return sorted(found)

    async def read(self, name: str) -> ForeignSession:
        """Creds and every key of the session ``name`` (the package's ``prefix``)."""
        try:
            entries = await (self._hash(name) if self._layout == "hset" else self._keys(name))
        except RedisError as exc:
            raise UnavailableError(f"source Redis: {exc}") from None
        return self._parse(name, entries)

    async def _hash(self, name: str) -> dict[str, bytes]:
        key = f"{name}:auth"
        kind = as_bytes(await self._redis.type(key))
        if kind not in (b"hash", b"none"):
            raise InvalidInputError(
                f"{key} is a Redis {kind.decode()}, not the hash of --layout hset"
            )
        raw = await self._redis.hgetall(key)
        return {as_bytes(k).decode("utf-8", "replace"): as_bytes(v) for k, v in raw.items()}

    async def _keys(self, name: str) -> dict[str, bytes]:
        prefix = f"{name}:"
        names: list[bytes] = []
        async for raw in self._redis.scan_iter(
            match=prefix.translate(_GLOB_SPECIAL) + "*", count=_SCAN
        ):
            rest = bytes(raw)[len(prefix.encode()) :].decode("utf-8", "replace")
            if ":" not in rest:
                names.append(bytes(raw))
        entries: dict[str, bytes] = {}
        for start in range(0, len(names), _SCAN):
            chunk = names[start : start + _SCAN]
            for raw, value in zip(chunk, await self._redis.mget(chunk), strict=True):
                if value is not None:  # deleted meanwhile, or not a string key
                    entries[raw[len(prefix.encode()) :].decode("utf-8", "replace")] = as_bytes(
                        value
                    )
        return entries

    def _parse(self, name: str, entries: dict[str, bytes]) -> ForeignSession:
        where = f"{name} ({self._layout} layout)"
        if "creds" not in entries:
            raise InvalidInputError(f"{where}: no creds")
        creds = check_creds(loads(_text(entries.pop("creds"), where), "node"), where)
        keys: dict[str, dict[str, Any]] = {}
        unknown: list[str] = []
        empty: list[str] = []
        for field_name, raw in sorted(entries.items()):
            parsed = self._names.parse(field_name + ".json")
            if parsed is None:
                unknown.append(field_name)
                continue
            try:
                value = loads(_text(raw, where), "node")
            except InvalidInputError as exc:
                raise InvalidInputError(f"{where}: {field_name}: {exc}") from None
            if value is None:
                empty.append(field_name)
                continue
            keys.setdefault(parsed[0], {})[parsed[1]] = value
        if unknown:
            raise unknown_names_error(where, unknown)
        notes = (f"{len(empty)} null entries left out (read as absent)",) if empty else ()
        return ForeignSession(name, creds, keys, notes)


__all__ = ["RedisAuthSource"]
