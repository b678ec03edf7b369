"""``baileys-store cache reset``: drop a hybrid store's Redis cache prefix.

The cache binds its prefix to one database (``<prefix>:durable`` holds the database's store
id, see ``RedisCache.bind_durable``). When that database is deleted or recreated, the next open
is refused, rightly: the cache may serve the old database's records. This command is the way
out. It opens the Redis cache directly, without binding it (that is the point: the database
need not match, nor exist), and drops every key under ``<prefix>:`` with ``SCAN`` and ``UNLINK``
in batches (in a Cluster, on every master).

It refuses while the cache holds writes no database has: a non-empty outbox list
(``…:{ns|session}:o``, entries written behind and not applied yet) or dead-letter list
(``…:d``). Those lists are what is checked, not the ready index ``<prefix>:outbox:ready``,
which may still name a session whose entries were all applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import click
from redis.asyncio import RedisCluster

from ..backends.redis import RedisCache, RedisOptions
from ..errors import ConfigError, StoreError
from ._context import CliContext
from ._sessions import one_line

_SCAN_COUNT = 1000
_UNLINK_BATCH = 500
# Written under a Redis-only durable store's prefix (see backends/redis/_prefix.py).
_DURABLE_KEYS = (":schema", ":sessions", ":meta")


@dataclass(slots=True)
class _Census:
    """What one pass over the prefix found."""

    keys: int = 0
    outbox: int = 0  # sessions with undrained write-behind entries
    dead: int = 0  # sessions with dead letters
    leases: int = 0  # session leases held now


async def _pages(cache: RedisCache, match: str) -> AsyncIterator[list[Any]]:
    """Every key matching ``match``, a ``SCAN`` page at a time (each master of a Cluster)."""
    client = cache.runner.client
    nodes: list[Any] = client.get_primaries() if isinstance(client, RedisCluster) else [None]
    for node in nodes:
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}
        cursor: Any = 0
        while True:
            cursor, keys = await cache.runner.run("reset", _scan(client, cursor, match, target))
            if isinstance(cursor, dict):  # a Cluster answers per node
                cursor = next(iter(cursor.values()))
            if keys:
                yield list(keys)
            if int(cursor) == 0:
                break


def _scan(client: Any, cursor: Any, match: str, target: dict[str, Any]) -> Callable[[], Any]:
    return lambda: client.scan(cursor, match=match, count=_SCAN_COUNT, **target)


async def _lengths(cache: RedisCache, names: list[Any]) -> list[int]:
    client = cache.runner.client

    async def run() -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return list(await pipe.execute())

    return [int(n) for n in await cache.runner.run("reset", run)] if names else []


async def _census(cache: RedisCache) -> _Census:
    """Count the prefix's keys, and the sessions whose outbox, dead letters or lease are live."""
    census = _Census()
    async for page in _pages(cache, f"{cache.runner.prefix}:*"):
        census.keys += len(page)
        # A session's keys are "<prefix>:{ns|sid}:<kind>"; braces appear in no name.
        kinds = [(k, (k.decode() if isinstance(k, bytes) else k).partition("}")[2]) for k in page]
        outbox = [k for k, kind in kinds if kind == ":o"]
        dead = [k for k, kind in kinds if kind == ":d"]
        census.leases += sum(kind == ":l" for _, kind in kinds)
        lengths = await _lengths(cache, outbox + dead)
        census.outbox += sum(n > 0 for n in lengths[: len(outbox)])
        census.dead += sum(n > 0 for n in lengths[len(outbox) :])
    return census


async def _holds_durable_store(cache: RedisCache) -> bool:
    prefix, client = cache.runner.prefix, cache.runner.client
    role: Any = await cache.runner.run("reset", lambda: client.get(prefix + ":role"))
    if role is not None:
        return bool((role.decode() if isinstance(role, bytes) else str(role)) == "durable")
    keys = [prefix + suffix for suffix in _DURABLE_KEYS]
    found: Any = await cache.runner.run("reset", lambda: client.exists(*keys))
    return bool(found)


async def _unlink_all(cache: RedisCache) -> int:
    client, dropped = cache.runner.client, 0
    async for page in _pages(cache, f"{cache.runner.prefix}:*"):
        for start in range(0, len(page), _UNLINK_BATCH):
            batch = page[start : start + _UNLINK_BATCH]
            dropped += int(await cache.runner.run("reset", _unlink(client, batch)))
    return dropped


def _unlink(client: Any, keys: list[Any]) -> Callable[[], Any]:
    return lambda: client.unlink(*keys)


async def _reset(
    cache: RedisCache, *, discard_pending: bool, confirm: Callable[[_Census], None]
) -> int:
    """Drop every key of ``cache``'s prefix; the number dropped.

    Args:
        cache: A Redis cache, not opened (and never bound to a database).
        discard_pending: Drop undrained write-behind entries and dead letters too.
        confirm: Called with what the prefix holds before anything is dropped; raises to stop.

    Raises:
        ConfigError: the prefix holds a Redis-only durable store, or writes are pending.
    """
    prefix = cache.runner.prefix
    await cache.open()
    try:
        if await _holds_durable_store(cache):
            raise ConfigError(
                f"redis prefix {prefix!r} holds a Redis-only durable store, not a cache: "
                "nothing was dropped"
            )
        census = await _census(cache)
        if (census.outbox or census.dead) and not discard_pending:
            raise ConfigError(
                f"redis prefix {prefix!r} holds writes no database has: {census.outbox} "
                f"session(s) with write-behind entries not drained, {census.dead} with dead "
                "letters. Drain them into the database the cache is bound to (`baileys-store "
                "outbox drain`, `outbox dlq retry` with that database), or pass "
                "--discard-pending to drop them too (those writes are lost); nothing was dropped"
            )
        confirm(census)
        return await _unlink_all(cache)
    finally:
        await cache.close()


@click.group("cache")
def cache_group() -> None:
    """The Redis cache tier of a hybrid store."""


@cache_group.command("reset")
@click.option(
    "--cache",
    "cache_url",
    metavar="URL",
    default=None,
    help="The cache's redis:// URL [default: BAILEYS_STORE_CACHE].",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--discard-pending",
    is_flag=True,
    help="Also drop write-behind entries not drained yet and dead letters (their writes are lost).",
)
def reset_command(*, cache_url: str | None, yes: bool, discard_pending: bool) -> None:
    """Drop every key of the cache's prefix (entries, database binding, leases, outbox).

    The way out when the database a hybrid store's cache was bound to is gone (a deleted
    SQLite file, a recreated database): the next open refuses the cache ("belongs to another
    durable tier") until it is reset. The database is not opened. Refused while write-behind
    entries or dead letters are pending (the cache holds the only copy), unless
    --discard-pending. Stop the applications using the cache first. Asks first unless --yes.
    """
    try:
        config = CliContext(None).config()
        url = cache_url or config.cache
        schemes = ("redis://", "rediss://", "redis+sentinel://", "rediss+sentinel://")
        if url is None or not url.startswith(schemes):
            raise ConfigError(
                "cache reset needs a redis:// or redis+sentinel:// cache URL "
                "(--cache or BAILEYS_STORE_CACHE)"
            )
        cache = RedisCache(RedisOptions(url, role="cache", op_timeout=config.op_timeout))
    except StoreError as exc:
        raise click.ClickException(one_line(exc)) from None
    prefix = cache.runner.prefix

    def confirm(census: _Census) -> None:
        click.echo(f"redis prefix {prefix!r}: {census.keys} key(s)", err=True)
        if census.leases:
            click.echo(f"{census.leases} session lease(s) held now: is an app running?", err=True)
        if census.outbox or census.dead:
            click.echo(
                f"{census.outbox} session(s) with undrained entries and {census.dead} with "
                "dead letters will be LOST",
                err=True,
            )
        if yes:
            return
        try:
            ok = click.confirm(f"Drop every key under {prefix}:?", default=False, err=True)
        except click.Abort:  # no answer: stdin closed or not there
            raise click.ClickException("cache not reset: no confirmation (pass --yes)") from None
        if not ok:
            raise click.ClickException("cache not reset")

    try:
        dropped = asyncio.run(_reset(cache, discard_pending=discard_pending, confirm=confirm))
    except (StoreError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None
    click.echo(
        f"Dropped {dropped} key(s) under {prefix}:; the next open binds the cache to the "
        "database it opens with."
    )
