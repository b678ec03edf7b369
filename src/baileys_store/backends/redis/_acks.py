"""Replica acknowledgements: ``WAIT n timeout`` after a write, in the write's own round trip.

Redis replicates asynchronously: a write the master acknowledged can vanish when a replica is
promoted. With ``StoreConfig.cache_replica_acks = n > 0`` every write-behind step (the value and
its outbox entry) and every lease change is followed by ``WAIT n timeout_ms``, queued in the same
pipeline as the script (``WAIT`` cannot run inside a script or ``MULTI``), so it costs no extra
round trip. Fewer than ``n`` acknowledgements in time raise :class:`UnavailableError`: the write
is not acknowledged to the caller (it may still be on the master, and may still take effect,
like any write whose outcome was an error). ``n = 0`` adds no command at all.

``WAIT`` counts the replicas that acknowledged the last write *of the connection it runs on*,
so it must follow the script on the same connection. A pipeline to one server does that. In a
Cluster, redis-py would route a keyless ``WAIT`` to every primary (and aggregate the replies),
so it is sent with ``target_nodes`` = the node owning the session's slot, where the script goes;
redis-py sends one node's commands of a pipeline in order on one connection. A redirected script
would run on another connection, where the ``WAIT`` proves nothing, so the pipeline runs without
redis-py's redirects (:func:`execute`): a ``MOVED`` (failover, resharding: the slot table is
patched, as redis-py does) or ``ASK`` (slot migration in progress) answer to the script means it
did not run, and the write is reported unavailable (the caller may retry); a redirected command
of the global indexes (ready index, epoch) is sent again on its own, as redis-py would have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis import exceptions as rex
from redis.asyncio import RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.commands.core import AsyncScript

from ... import errors
from ._client import ScriptRunner

# The share of op_timeout WAIT may block: the rest is left to the round trip and the script, so
# a missing replica is reported with its count, not as a bare timeout of the whole call.
_WAIT_SHARE = 0.8


class ReplicaAcks:
    """``WAIT`` for ``replicas`` acknowledgements, at most ``timeout * 0.8`` seconds.

    Args:
        replicas: Replicas that must acknowledge each write (``0``: none, no command sent).
        timeout: The operation's time budget in seconds (``op_timeout``).
    """

    __slots__ = ("_loaded", "replicas", "wait_ms")

    def __init__(self, replicas: int, timeout: float) -> None:
        self.replicas = replicas
        # Never 0: ``WAIT n 0`` blocks forever.
        self.wait_ms = max(1, int(timeout * 1000 * _WAIT_SHARE))
        self._loaded: set[str] = set()

    async def preload(self, runner: ScriptRunner, script: AsyncScript) -> None:
        """``SCRIPT LOAD`` a script before its first acknowledged run in this process.

        A pipeline whose ``EVALSHA`` fails for a missing script still runs its ``WAIT``, which
        then waits its whole time for a write (``ZADD``) before the script is loaded and the
        pipeline runs again: twice ``wait_ms`` would overrun ``op_timeout``.
        """
        if script.sha not in self._loaded:
            await runner.client.script_load(script.script)
            self._loaded.add(script.sha)

    def queue(self, pipe: Pipeline | ClusterPipeline, node: ClusterNode | None) -> None:
        """Queue the ``WAIT`` (``node``: the Cluster node of the slot the script went to)."""
        if node is None:
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
        else:
            pipe.execute_command("WAIT", self.replicas, self.wait_ms, target_nodes=node)

    def check(self, op: str, acked: Any) -> None:
        """Raise :class:`UnavailableError` when fewer replicas than asked acknowledged."""
        count = int(acked)
        if count < self.replicas:
            raise errors.UnavailableError(
                f"redis {op}: {count} of {self.replicas} replica(s) acknowledged the write "
                f"within {self.wait_ms} ms; the write is not acknowledged (it may still be "
                "applied on the master)"
            )


def acks_of(runner: ScriptRunner) -> ReplicaAcks | None:
    """The runner's replica acknowledgements (``None`` when ``replica_acks`` is 0)."""
    n = runner.options.replica_acks
    return ReplicaAcks(n, runner.options.op_timeout) if n > 0 else None


def slot_node(runner: ScriptRunner, key: str) -> ClusterNode | None:
    """The Cluster node owning ``key``'s slot now (``None`` outside a Cluster)."""
    client = runner.client
    if not isinstance(client, RedisCluster):
        return None
    node = client.get_node_from_key(key)
    if node is None:  # pragma: no cover - redis-py raises SlotNotCoveredError instead
        raise rex.ClusterDownError(f"no node serves the slot of {key!r}")
    return node


async def execute(
    runner: ScriptRunner,
    op: str,
    pipe: Pipeline | ClusterPipeline,
    *,
    script_at: int,
    redo: dict[int, Callable[[], Awaitable[Any]]] | None = None,
) -> list[Any]:
    """Run ``pipe``; in a Cluster without following redirects (see the module doc).

    Args:
        runner: The tier's runner (its Cluster client's slot table is patched on ``MOVED``).
        op: The operation, for messages.
        pipe: The pipeline, the script at index ``script_at``, its ``WAIT`` after it.
        script_at: Where the script is in the pipeline.
        redo: Commands of other slots sent again on their own if redirected, by index.
    """
    if not isinstance(pipe, ClusterPipeline):
        return list(await pipe.execute())
    results = list(await pipe.execute(raise_on_error=False, allow_redirections=False))
    client = runner.client
    for i, result in enumerate(results):
        if not isinstance(result, rex.AskError):  # MovedError is an AskError too
            continue
        if isinstance(result, rex.MovedError) and isinstance(client, RedisCluster):
            await client.nodes_manager.move_slot(result)  # what redis-py does on a redirect
        if i == script_at:
            raise errors.UnavailableError(
                f"redis {op}: the session's slot is moving to another node "
                f"({type(result).__name__}); the write did not run"
            )
        if redo is not None and i in redo:
            results[i] = await redo[i]()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def still_owner(runner: ScriptRunner, op: str, key: str, node: ClusterNode | None) -> None:
    """After a Cluster write: the slot's owner must be the node the ``WAIT`` ran on."""
    now = slot_node(runner, key)
    if node is not None and now is not None and now.name != node.name:
        raise errors.UnavailableError(
            f"redis {op}: the session's slot moved to another node during the write; "
            "replica acknowledgement unknown, the write is not acknowledged"
        )


async def eval_acked(
    runner: ScriptRunner, acks: ReplicaAcks, name: str, keys: list[str], args: list[Any]
) -> Any:
    """Run the script ``name`` then ``WAIT``, pipelined in one round trip; the script's reply."""
    op = name
    script, client = runner.script(name), runner.client

    async def once() -> tuple[Any, Any, ClusterNode | None]:
        node = slot_node(runner, keys[0])
        async with client.pipeline(transaction=False) as pipe:
            # EVALSHA by hand: a Script object in a pipeline costs a SCRIPT EXISTS round trip.
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            acks.queue(pipe, node)
            reply, acked = await execute(runner, name, pipe, script_at=0)
        return reply, acked, node

    async def run() -> tuple[Any, Any, ClusterNode | None]:
        await acks.preload(runner, script)
        try:
            return await once()
        except rex.NoScriptError:  # a restarted or flushed server: load it, run again
            await client.script_load(script.script)
            return await once()

    reply, acked, node = await runner.run(op, run)
    still_owner(runner, op, keys[0], node)
    acks.check(op, acked)
    return reply
