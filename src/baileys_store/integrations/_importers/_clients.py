"""Read-only connections to the source servers (redis-py and PyMongo, imported when used).

A bad URL or an unreachable server becomes one :class:`InvalidInputError` /
:class:`UnavailableError` line before anything is read, so the destination is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import InvalidInputError, UnavailableError

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase
    from redis.asyncio import Redis

_TIMEOUT_S = 5.0


def _scheme(url: str, allowed: tuple[str, ...], what: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in allowed:
        raise InvalidInputError(
            f"{what} needs a {' or '.join(s + '://' for s in allowed)} URL, "
            f"not {url.split('://', maxsplit=1)[0]!r}"
        )
    return scheme


def as_bytes(value: bytes | str) -> bytes:
    """A redis-py reply (typed ``bytes | str``; bytes without ``decode_responses``)."""
    return value.encode() if isinstance(value, str) else bytes(value)


async def open_redis(url: str, what: str) -> Redis:
    """A connected client for ``redis://`` / ``rediss://`` / ``unix://`` (pinged once)."""
    _scheme(url, ("redis", "rediss", "unix"), what)
    try:
        from redis.asyncio import Redis  # noqa: PLC0415 - the redis extra, only when used
        from redis.exceptions import RedisError  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - redis is an extra
        raise InvalidInputError(
            f"{what} needs redis-py: pip install 'baileys-store[redis]'"
        ) from exc
    try:
        client: Redis = Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
        )
    except ValueError as exc:
        raise InvalidInputError(f"bad Redis URL: {exc}") from None
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise UnavailableError(f"cannot reach the source Redis: {exc}") from None
    return client


async def open_mongo(
    url: str, what: str, *, options: tuple[str, ...] = ()
) -> tuple[AsyncMongoClient[dict[str, Any]], AsyncDatabase[dict[str, Any]], dict[str, str]]:
    """Client and database of a ``mongodb://host/DB`` URL (the database is required).

    ``options`` are query parameters this tool reads itself (e.g. ``collection``): they are
    taken out of the URL and returned.
    """
    _scheme(url, ("mongodb", "mongodb+srv"), what)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in options}
    url = urlunsplit(
        parts._replace(query=urlencode([(k, v) for k, v in query if k not in options]))
    )
    database = parts.path.lstrip("/")
    if not database:
        raise InvalidInputError(f"{what} needs the database in the URL: mongodb://HOST/DATABASE")
    try:
        from pymongo import AsyncMongoClient  # noqa: PLC0415 - the mongo extra, only when used
        from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - pymongo is an extra
        raise InvalidInputError(
            f"{what} needs PyMongo: pip install 'baileys-store[mongodb]'"
        ) from exc
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=int(_TIMEOUT_S * 1000)
        )
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise InvalidInputError(f"bad MongoDB URL: {exc}") from None
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        raise UnavailableError(f"cannot reach the source MongoDB: {exc}") from None
    return client, client[database], ours


__all__ = ["as_bytes", "open_mongo", "open_redis"]
