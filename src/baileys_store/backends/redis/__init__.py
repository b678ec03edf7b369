"""Redis backends (redis-py asyncio + hiredis): the Redis-only durable tier and the cache tier.

URL: ``redis[s]://[user:password@]host[:port][/db][?option=value&...]``, or for a Sentinel
service ``redis[s]+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?...]``
(the hosts are the sentinels, 26379 by default; see :mod:`._sentinel`). Options (anything
else is a :class:`ConfigError`):

- ``cluster=true``: Redis Cluster; ``host:port`` is any node (``db`` must be 0).
- ``max_connections=N`` (32): pool size; callers wait for a free connection, never fail.
- ``socket_connect_timeout=S`` (default: ``op_timeout``), ``socket_timeout=S`` (default: none:
  every call runs under the ``op_timeout`` deadline, and a socket timeout costs a task a call).
- ``retries=N`` (3; Sentinel: 100, and no new attempt after 80% of ``op_timeout``, so a
  failover shorter than that is not seen by callers): attempts for transient errors
  (connection reset, failover, ``READONLY``); 1 disables. redis-py's own client retries are
  switched off so the two never multiply. The write-behind appends are retried only when the
  connection failed before anything was sent (see :mod:`._client`).
- ``sentinel_password=``, ``sentinel_username=`` (Sentinel URLs only): the sentinels' own
  credentials (``user:password@`` authenticates to the master).
- ``prefix=NAME`` (``bs``): key prefix; the cache tier adds ``c`` (``bsc``), so both tiers may
  share one server.
- ``ttl=S`` (cache only, 86400): entries expire S seconds after their last write. The durable
  tier never sets a TTL.
- ``client_name=NAME``; with ``rediss://``: ``ssl_cert_reqs=required|optional|none``,
  ``ssl_ca_certs=PATH``, ``ssl_certfile=PATH``, ``ssl_keyfile=PATH``, ``ssl_check_hostname=BOOL``.

Layout: every key of a session carries the hash tag ``{namespace|session_id}`` (``|`` appears in
neither, so two sessions never share a tag), so all of a session's operations hit one Cluster slot:
``<prefix>:{ns|sid}:m`` meta hash (``creds``, ``v`` version, ``f`` fence, ``c``/``u`` times),
``...:t`` set of the key types in use, ``...:k:<type>`` hash id → blob. Writes are Lua scripts
(``lua/*.lua``, see :mod:`._scripts`): fence check and all writes in one atomic step.

Global keys (outside every session's tag): ``<prefix>:schema`` layout version,
``<prefix>:role`` (``durable``: see :mod:`._prefix`), ``<prefix>:meta`` hash of the
store's metadata (``bind_meta``: ``store_id``, encryption mode, ...). A session without a meta
hash (deleted, or fenced before its first write) keeps its fence in ``...:f`` (a tombstone).

Size of a call: a read runs as ``HMGET`` commands of at most 5,000 ids (a read of more is not
one snapshot); a write is one script whatever its size, so it stays all-or-nothing. Redis has no
atomic unit that lets other clients in (``MULTI``/``EXEC`` also runs its commands back to back),
so a 200k-id write holds the server for its run (~150 ms measured), every other client waiting.

``list_sessions`` reads a sorted index ``<prefix>:sessions`` (members ``ns NUL sid``, so lexical
order is (namespace, session_id) order). In a Cluster it lives in another slot than the
sessions, so it cannot change in the same atomic step. Trade-off chosen: a session is created
only after its index entry exists (the script answers "needs index", the client adds the entry
and runs the script again, and adds it once more afterwards), and ``delete_session`` removes the
entry only after the session, then re-adds it if the session came back meanwhile. A listing may
meet dead entries (skipped); it misses a live session only if a create and a delete of the same
session race *and* one of the two processes dies between its script and its index step. Cost: a
session's first write takes four round trips instead of one.

Durability of the Redis-only mode is Redis's: run it with ``appendonly yes`` and
``appendfsync everysec`` (may lose ~1 s on a crash) or ``always``, and with
``maxmemory-policy noeviction`` (an LRU policy would evict durable data: keep the cache on
another server, or use ``volatile-*`` policies there, when both tiers share one). Open logs a
warning, and ``check()`` reports it, when the policy is ``allkeys-*``.

Failover and restarts: every new connection probes the master's era (``run_id`` +
``master_replid``, :mod:`._era`); the cache scripts treat another era's cached entries as a miss
(the durable tier is read again), and the first lease acquisition of a session in a new era
raises its tokens past anything the old master may have issued without replicating it. A
Cluster has no single era: none of this applies there.

Modules: :mod:`._durable` (:class:`RedisDurable`), :mod:`._cache` (:class:`RedisCache`, the
hybrid store's cache: reads, fills, updates, write-behind) with :mod:`._outbox` and
:mod:`._requeue`; both own a :class:`~._client.ScriptRunner` (client, retries, errors) and a
:class:`~._leases.RedisLeases`; :mod:`._index` (the session index), :mod:`._prefix` (prefix
roles, eviction policy), :mod:`._url` (:class:`RedisOptions`), :mod:`._sentinel` (the
Sentinel URL and client), :mod:`._era` (the master's era).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ... import errors
from ._cache import RedisCache
from ._durable import RedisDurable
from ._outbox import RedisOutbox
from ._url import RedisOptions

if TYPE_CHECKING:
    from ..._config import StoreConfig


def from_config(
    config: StoreConfig, role: str, *, on_retry: Callable[[], None] | None = None
) -> RedisDurable | RedisCache:
    """The Redis backend for ``role`` of ``config``.

    Args:
        config: The store configuration (``durable`` or ``cache`` holds the URL).
        role: ``durable`` (a :class:`RedisDurable`) or ``cache`` (a :class:`RedisCache`).
        on_retry: Called before each retry of a transient error (the store counts them).

    Raises:
        ConfigError: the URL is invalid, or ``role`` names no Redis URL of ``config``.
    """
    if role == "durable":
        options = RedisOptions(config.durable, role=role, op_timeout=config.op_timeout)
        return RedisDurable(options, on_retry=on_retry)
    if role == "cache" and config.cache is not None:
        options = RedisOptions(config.cache, role=role, op_timeout=config.op_timeout)
        options.replica_acks = config.cache_replica_acks
        return RedisCache(options, on_retry=on_retry)
    raise errors.ConfigError(f"no redis backend for role {role!r}")


__all__ = ["RedisCache", "RedisDurable", "RedisOptions", "RedisOutbox", "from_config"]
