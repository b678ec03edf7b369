"""Import from ``@luoarch/baileys-store-core`` (luoarch/baileys-store-core; Redis and MongoDB).

Layouts, read from its ``src/redis/store.ts``, ``src/mongodb/store.ts`` and
``src/hybrid/use-hybrid-auth-state.ts`` (values: see :mod:`._store_core_codec`):

* Redis (``RedisAuthStore``): per session three keys with a TTL (``SETEX``, 24 h default):
  ``baileys:auth:{session}:creds`` (envelope of ``{creds, version, updatedAt}``),
  ``baileys:auth:{session}:keys`` (envelope of ``{keys: {type: {id: value}}, appState?,
  version, updatedAt}``, the whole key set of the session in one value) and
  ``baileys:auth:{session}:meta`` (plain JSON ``{version, updatedAt}``, not needed here).
* MongoDB (``MongoAuthStore``): one document per session in one collection (``sessions`` in
  its presets; ``?collection=NAME`` in the URL here): ``{_id: session, version, creds: field,
  keys: {type: field}, appState?: field, fencingToken, updatedAt, createdAt, expiresAt}``,
  each field ``base64(nonce || ciphertext+tag)`` of the codec's output; ``creds`` holds the
  creds object itself, ``keys[type]`` the ``{id: value}`` map of that type. A TTL index on
  ``expiresAt`` deletes idle sessions there too.

The hook passes the merged key map of every type on each write, so ``keys`` holds the
session's whole key set. ``appState`` is not part of Baileys' key store and is left out (noted).
``app-state-sync-key`` values are the protobuf's JSON form, kept as the folder importer does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ...errors import InvalidInputError, UnavailableError
from ._clients import as_bytes, open_redis
from ._core import ForeignSession, check_creds
from ._store_core_codec import derive_key, open_envelope

if TYPE_CHECKING:
    from redis.asyncio import Redis

REDIS_PREFIX = "baileys:auth:"
DEFAULT_COLLECTION = "sessions"
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def keys_map(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise InvalidInputError(f"{where}: keys are not a {{type: {{id: value}}}} map")
    return {t: {i: v for i, v in ids.items() if v is not None} for t, ids in value.items()}


class StoreCoreRedisSource:
    """store-core's Redis keys, read with ``SCAN``/``GET`` only."""

    def __init__(self, client: Redis, key: bytes | None) -> None:
        self._redis = client
        self._key = key

    @classmethod
    async def open(cls, url: str, master_key: str | None) -> StoreCoreRedisSource:
        """Connect to ``redis://HOST:PORT/DB``."""
        key = derive_key(master_key) if master_key else None
        return cls(await open_redis(url, "store-core"), key)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._redis.aclose()

    async def sessions(self) -> list[str]:
        """Sessions with a ``baileys:auth:{session}:creds`` key."""
        found: list[str] = []
        try:
            found.extend(
                [
                    bytes(raw).decode("utf-8", "replace")[len(REDIS_PREFIX) : -len(":creds")]
                    async for raw in self._redis.scan_iter(
                        match=REDIS_PREFIX + "*:creds", count=1000
                    )
                ]
            )
        except RedisError as exc:
            raise UnavailableError(f"source Redis: {exc}") from None
        return sorted(found)

    async def _mget(self, names: list[str]) -> list[bytes | None]:
        return [None if v is None else as_bytes(v) for v in await self._redis.mget(names)]

    async def read(self, name: str) -> ForeignSession:
        """Creds and keys of one session (both values read in one ``MGET``)."""
        base = f"{REDIS_PREFIX}{name}:"
        try:
            raw_creds, raw_keys = await self._mget([base + "creds", base + "keys"])
        except RedisError as exc:
            raise UnavailableError(f"source Redis: {exc}") from None
        if raw_creds is None:
            raise InvalidInputError(f"{base}creds: no such key")
        stored = open_envelope(raw_creds, self._key, base + "creds")
        if not isinstance(stored, dict) or "creds" not in stored:
            raise InvalidInputError(f"{base}creds: no creds in the stored value")
        creds = check_creds(stored["creds"], base + "creds")
        keys: dict[str, dict[str, Any]] = {}
        notes: tuple[str, ...] = ()
        if raw_keys is not None:
            stored_keys = open_envelope(raw_keys, self._key, base + "keys")
            if not isinstance(stored_keys, dict):
                raise InvalidInputError(f"{base}keys: not an object")
            keys = keys_map(stored_keys.get("keys", {}), base + "keys")
            if stored_keys.get("appState"):
                notes = ("appState left out (not part of Baileys' key store)",)
        return ForeignSession(name, creds, keys, notes)


__all__ = ["DEFAULT_COLLECTION", "REDIS_PREFIX", "StoreCoreRedisSource", "keys_map"]
