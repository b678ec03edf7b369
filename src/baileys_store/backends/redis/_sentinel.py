"""Redis Sentinel: the ``redis+sentinel://`` URL and the client that follows the master.

URL: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?...]``
(``rediss+sentinel://``: TLS to the sentinels and to the master). The hosts are the sentinels
(port 26379 when omitted); ``user``/``password`` authenticate to the master (and its replicas);
``sentinel_username`` / ``sentinel_password`` authenticate to the sentinels. Every other option
is the one of a ``redis://`` URL (``cluster`` excepted: a Sentinel service is not a Cluster).

Built on :class:`redis.asyncio.sentinel.Sentinel` and ``master_for``: each *new* connection asks
the sentinels for the master's address (so after a failover the next connection goes to the
promoted replica), and a ``READONLY`` reply (a demoted master still answering) disconnects and
surfaces as a connection error, which the store's retry layer retries on a fresh connection.
The pool is redis-py's Sentinel pool with :class:`~redis.asyncio.BlockingConnectionPool`'s bound
(callers wait for a free connection instead of failing when the pool is full).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from ... import errors

SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_OPTS = ("sentinel_password", "sentinel_username")
_DEFAULT_PORT = 26379


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool, bounded like a :class:`BlockingConnectionPool`.

    ``SentinelConnectionPool`` alone raises ``Too many connections`` when it is full; the MRO
    takes the master discovery from the Sentinel pool and ``get_connection``/``release`` (wait
    for a free connection, up to ``timeout``) from the blocking one.
    """


def split_netloc(role: str, netloc: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``(user, password, [(host, port), ...])`` of a Sentinel URL's netloc (``ConfigError``)."""
    userinfo, at, hostlist = netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None  # ``:secret@``: a password alone
    hosts = [_host_port(role, item.strip()) for item in hostlist.split(",") if item.strip()]
    if not hosts:
        raise errors.ConfigError(f"{role}: redis+sentinel URL names no sentinel host")
    return user, password, hosts


def _host_port(role: str, item: str) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, close, rest = item[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise errors.ConfigError(f"{role}: invalid sentinel address in redis+sentinel URL")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise errors.ConfigError(
            f"{role}: a sentinel address in the redis+sentinel URL has no host"
        )
    if not port_text:
        return host, _DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise errors.ConfigError(f"{role}: invalid sentinel port in redis+sentinel URL")
    return host, int(port_text)


def split_path(role: str, path: str) -> tuple[str, int]:
    """``(service_name, db)`` of a Sentinel URL's path ``/service_name[/db]``."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts or not parts[0]:
        raise errors.ConfigError(f"{role}: redis+sentinel URL names no service (/service_name)")
    if len(parts) > 2:
        raise errors.ConfigError(f"{role}: redis+sentinel URL path is /service_name[/db]")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise errors.ConfigError(f"{role}: redis+sentinel URL database must be a number")
    return unquote(parts[0]), int(db)


def connection_class(tls: bool) -> type[AbstractConnection]:
    """The connection class ``master_for`` uses (plain or TLS)."""
    return SentinelManagedSSLConnection if tls else SentinelManagedConnection


def connect(
    hosts: list[tuple[str, int]],
    service: str,
    *,
    sentinel_kwargs: dict[str, Any],
    client_kwargs: dict[str, Any],
    max_connections: int,
    timeout: float,
) -> tuple[Sentinel, Redis]:
    """The Sentinel manager and the master's client (connections open lazily)."""
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
    client = sentinel.master_for(
        service,
        connection_pool_class=BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout,  # waiting for a free connection
        **client_kwargs,
    )
    return sentinel, client


async def check_service(sentinel: Sentinel, service: str) -> None:
    """Ask the sentinels for ``service``'s master; typed errors (no password in them).

    Raises:
        ConfigError: the sentinels that answered know no service of that name.
        UnavailableError: no sentinel answered, or the service has no usable master now.
    """
    try:
        await sentinel.discover_master(service)
    except MasterNotFoundError:
        pass
    else:
        return
    answered = known = 0
    for node in sentinel.sentinels:
        try:
            masters: Any = await node.sentinel_masters()
        except Exception:  # noqa: S112 (an unreachable sentinel: the next one may answer)
            continue
        answered += 1
        known += service in masters
    if answered == 0:
        raise errors.UnavailableError(
            f"redis sentinel: none of the {len(sentinel.sentinels)} sentinel(s) answered"
        )
    if known == 0:
        raise errors.ConfigError(
            f"redis sentinel: the sentinels know no service {service!r} "
            "(check the service name in the redis+sentinel URL)"
        )
    raise errors.UnavailableError(
        f"redis sentinel: service {service!r} has no reachable master now (failover in progress?)"
    )


def master_address(client: Redis | RedisCluster) -> str:
    """The master address the client's pool last discovered (``?`` before the first)."""
    pool = getattr(client, "connection_pool", None)
    address = getattr(pool, "master_address", None)
    if not address:
        return "?"
    host, port = address
    return f"{host}:{port}"
