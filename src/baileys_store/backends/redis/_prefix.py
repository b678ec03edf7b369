"""What a Redis prefix is used for, and whether the server may evict what we keep under it.

**Role marker.** ``<prefix>:role`` holds ``durable`` or ``cache``, claimed atomically (one key,
one script) by the Redis-only durable tier at open and by the hybrid cache when it binds its
durable tier. A cache over a durable prefix would treat the durable sessions as cached data (a
lease takeover evicts their creds and keys), and a durable tier over a cache prefix would
serve cache entries as the truth, so the second role is refused with :class:`ConfigError`.

Data written before the marker existed is found with one ``EXISTS`` of keys each kind has
always written under the prefix itself (no ``SCAN`` of the keyspace at open, which would cost
O(keys) on every start): ``:schema`` (written by every open of the durable tier since its first
release) and ``:sessions`` / ``:meta`` for durable data; ``:durable`` (the cache's binding to
its database) and the outbox indexes for cache data. A cache last used before the binding
existed and without outbox entries leaves nothing global, so it is not detected: its entries
are per-session keys that expire with their TTL.

**Eviction policy.** ``CONFIG GET maxmemory-policy`` (every node of a Cluster). ``allkeys-*``
can evict keys that have no TTL: on a cache the lease bookkeeping, the outbox and the values
only the outbox holds; on the durable tier the data itself. ``volatile-*`` evicts only keys
with a TTL: cache entries (harmless) and lease keys (an early expiry, which the fence makes
safe); the durable tier sets a TTL on nothing else. A server that refuses ``CONFIG`` (renamed
or disabled, as on managed services) reports ``unknown`` and is not an error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster

from ... import errors

if TYPE_CHECKING:
    from ._client import ScriptRunner

log = logging.getLogger("baileys_store")

DURABLE, CACHE = "durable", "cache"
# Keys under the prefix (not a session's) each role has always written.
_LEGACY = {
    DURABLE: (":schema", ":sessions", ":meta"),
    CACHE: (":durable", ":outbox:ready", ":outbox:dlq"),
}


async def claim_role(runner: ScriptRunner, role: str) -> None:
    """Mark the runner's prefix as used by ``role``; ConfigError if the other role has it."""
    prefix, client = runner.prefix, runner.client
    other = CACHE if role == DURABLE else DURABLE
    legacy = [prefix + suffix for suffix in _LEGACY[other]]
    marker = prefix + ":role"

    async def legacy_data() -> int:
        return int(await client.exists(*legacy))

    found: Any = await runner.run("open", lambda: client.get(marker))
    if found is None:
        older: int = await runner.run("open", legacy_data)
        if older:
            raise _refused(prefix, role, other)
    claimed = await runner.eval("open", "claim_role", [marker], [role])
    have = claimed.decode() if isinstance(claimed, bytes) else str(claimed)
    if have != role:
        raise _refused(prefix, role, have)


def _refused(prefix: str, role: str, other: str) -> errors.ConfigError:
    what = "a hybrid store's cache" if other == CACHE else "a Redis-only durable store"
    return errors.ConfigError(
        f"redis prefix {prefix!r} holds the data of {what}; it cannot be used as a {role} "
        "prefix too (give each store its own ?prefix=; nothing was changed)"
    )


async def eviction_policy(runner: ScriptRunner) -> str:
    """The server's ``maxmemory-policy`` (a Cluster's worst node's), or ``unknown``."""
    client = runner.client
    try:
        if isinstance(client, RedisCluster):
            per_node: Any = await client.config_get(
                "maxmemory-policy", target_nodes=RedisCluster.ALL_NODES
            )
            policies = sorted({str(v.get("maxmemory-policy", "")) for v in per_node.values()})
        else:
            reply: Any = await client.config_get("maxmemory-policy")
            policies = [str(reply.get("maxmemory-policy", ""))]
    except Exception:  # CONFIG renamed/disabled or refused by an ACL: we cannot tell
        return "unknown"
    risky = [p for p in policies if p.startswith("allkeys-")]
    known = [p for p in policies if p]
    return (risky or known or ["unknown"])[0]


def policy_warning(tier: str, policy: str) -> str:
    """A short warning for ``policy`` on ``tier`` (``""`` when it cannot evict our state)."""
    if not policy.startswith("allkeys-"):
        return ""
    if tier == DURABLE:
        return f"maxmemory-policy {policy} can evict durable data (use noeviction)"
    return (
        f"maxmemory-policy {policy} can evict leases and outbox entries "
        "(use noeviction or volatile-*)"
    )


async def warn_policy(runner: ScriptRunner) -> str:
    """Probe the policy at open and log a warning when it can evict our state; the detail."""
    policy = await eviction_policy(runner)
    warning = policy_warning(runner.tier, policy)
    if warning:
        log.warning(
            "redis %s tier: %s",
            runner.tier,
            warning,
            extra={"event": "redis_eviction_policy", "tier": runner.tier, "policy": policy},
        )
    return policy
