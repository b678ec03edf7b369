"""Import sessions from other stores people run today (read-only on the source).

Formats (each module's docstring says what that package writes, with the source it was read
from): ``baileys-redis-auth`` (:mod:`.redis_auth`), ``mongo-baileys`` (:mod:`.mongo_baileys`)
and ``store-core`` (:mod:`.store_core`, Redis or MongoDB). Every source is read with reads only;
each session is read whole and checked before it is written (keys first, creds last).

Usage::

    source = await open_source("baileys-redis-auth", "redis://localhost:6379/0", layout="hset")
    try:
        results = await import_sessions(store, source, await source.sessions())
    finally:
        await source.aclose()
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...errors import InvalidInputError
from ._core import (
    LAYOUTS,
    ForeignSession,
    Layout,
    SessionResult,
    Source,
    import_sessions,
    write_session,
)

FORMATS: tuple[str, ...] = ("baileys-redis-auth", "mongo-baileys", "store-core")


async def open_source(
    fmt: str, url: str, *, layout: Layout = "hset", master_key: str | None = None
) -> Source:
    """Connect to a foreign store of format ``fmt`` at ``url``.

    Args:
        fmt: One of :data:`FORMATS`.
        url: ``redis://...`` (baileys-redis-auth, store-core) or ``mongodb://HOST/DB``
            (mongo-baileys, store-core; ``?collection=NAME`` for store-core).
        layout: baileys-redis-auth's layout: ``hset`` or ``keys``.
        master_key: store-core's ``masterKey`` (hex), for encrypted data.

    Raises:
        InvalidInputError: unknown format, a URL this format cannot use.
        UnavailableError: the server cannot be reached.
    """
    # Each format imports its driver (an extra) only when it is used.
    if fmt == "baileys-redis-auth":
        from .redis_auth import RedisAuthSource  # noqa: PLC0415

        return await RedisAuthSource.open(url, layout)
    if fmt == "mongo-baileys":
        from .mongo_baileys import MongoBaileysSource  # noqa: PLC0415

        return await MongoBaileysSource.open(url)
    if fmt == "store-core" and urlsplit(url).scheme.startswith("mongodb"):
        from .store_core_mongo import StoreCoreMongoSource  # noqa: PLC0415

        return await StoreCoreMongoSource.open(url, master_key)
    if fmt == "store-core":
        from .store_core import StoreCoreRedisSource  # noqa: PLC0415

        return await StoreCoreRedisSource.open(url, master_key)
    raise InvalidInputError(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "LAYOUTS",
    "ForeignSession",
    "Layout",
    "SessionResult",
    "Source",
    "import_sessions",
    "open_source",
    "write_session",
]
