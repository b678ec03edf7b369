"""Throwaway replicated Redis for the HA tests: a master with replicas, a Cluster with replicas.

- :func:`start_replicated`: one master and ``n`` replicas (``--replicaof``) on free loopback
  ports, waiting until every replica's link is up.
- :func:`start_replicated_cluster`: 3 masters + 3 replicas created with ``redis-cli --cluster
  create ... --cluster-replicas 1`` and a small ``cluster-node-timeout`` (1000 ms), so a killed
  master's replica is promoted within a few seconds.

Everything runs without persistence in a temp dir; ``stop()`` kills every process it started
(SIGKILL of each process group, in ``try``/``finally``), and every wait is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from tests._services.redis import (
    RedisServer,
    _cli,
    ensure_redis_binaries,
    free_cluster_port,
    free_port,
)

NODE_TIMEOUT_MS = 1000


def _server(base: Path, port: int, *args: str) -> RedisServer:
    workdir = base / f"redis-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    args = ("--repl-diskless-sync-delay", "0", *args)
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, workdir, args)
    server.start()
    return server


def _wait(what: str, ok: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis: {what} within {timeout}s")
        time.sleep(0.05)


def info(port: int, section: str = "replication") -> dict[str, str]:
    """``INFO section`` of the server on ``port`` as a dict (empty when it does not answer)."""
    out: dict[str, str] = {}
    for line in _cli(port, "INFO", section, timeout=3).splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            out[name] = value
    return out


def online(port: int) -> int:
    """Replicas the master on ``port`` counts as ``state=online`` (only those ack a ``WAIT``).

    A replica whose link is up may not be online yet on the master's side (after a diskless
    sync the master waits for its first ``REPLCONF ACK``): a test writing before that would
    see ``WAIT`` time out.
    """
    fields = info(port)
    return sum(
        "state=online" in fields.get(f"slave{i}", "")
        for i in range(int(fields.get("connected_slaves", "0") or 0))
    )


def _own_key(port: int) -> str:
    """A key the Cluster master on ``port`` serves (its own ``CLUSTER NODES`` line)."""
    ranges: list[tuple[int, int]] = []
    for line in _cli(port, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "myself" in parts[2]:
            for spec in parts[8:]:
                lo, _, hi = spec.partition("-")
                if lo.isdigit():
                    ranges.append((int(lo), int(hi or lo)))
    for i in range(100_000):
        key = f"bs-test:probe:{i}"
        if any(lo <= key_slot(key.encode()) <= hi for lo, hi in ranges):
            return key
    raise RuntimeError(f"node {port} serves no slot")


def acks_writes(port: int, replicas: int, *, cluster: bool = False) -> bool:
    """A probe write on ``port`` that ``replicas`` replicas acknowledge within 200 ms.

    Online is not enough: right after a sync a replica may not answer the master's
    ``GETACK`` for about a second (its acknowledged offset stays 0), and a ``WAIT`` then times out.
    """
    client = redis.Redis(host="127.0.0.1", port=port, single_connection_client=True)
    try:
        key = _own_key(port) if cluster else "bs-test:probe"
        client.set(key, "1")
        acked = int(client.execute_command("WAIT", replicas, 200))  # type: ignore[no-untyped-call]
        client.delete(key)
        return acked >= replicas
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class ReplicatedRedis:
    """A master and its replicas; ``url`` is the master's."""

    master: RedisServer
    replicas: list[RedisServer]
    base: Path
    _cleanup: bool = field(default=True, repr=False)

    @property
    def url(self) -> str:
        """The master's URL (``redis://127.0.0.1:PORT/0``)."""
        return self.master.url

    def replica_get(self, index: int, key: str) -> str:
        """``GET key`` read on replica ``index`` directly (``''`` when missing)."""
        return _cli(self.replicas[index].port, "GET", key)

    def replica_cmd(self, index: int, *args: str) -> str:
        """Any command run on replica ``index`` directly."""
        return _cli(self.replicas[index].port, *args)

    def stop(self) -> None:
        """Kill every server and remove the temp dir."""
        try:
            for replica in self.replicas:
                replica.stop()
        finally:
            self.master.stop()
            if self._cleanup:
                shutil.rmtree(self.base, ignore_errors=True)


def start_replicated(replicas: int = 1) -> ReplicatedRedis:
    """Start a master and ``replicas`` replicas; wait until every replica is in sync."""
    ensure_redis_binaries()
    base = Path(tempfile.mkdtemp(prefix="bs-redis-repl-"))
    master = _server(base, free_port())
    nodes: list[RedisServer] = []
    try:
        for _ in range(replicas):
            nodes.append(_server(base, free_port(), "--replicaof", "127.0.0.1", str(master.port)))
        _wait(
            "replicas not in sync",
            lambda: all(info(n.port).get("master_link_status") == "up" for n in nodes),
        )
        _wait("master does not count its replicas online", lambda: online(master.port) == replicas)
        _wait("replicas do not acknowledge writes", lambda: acks_writes(master.port, replicas))
    except BaseException:
        ReplicatedRedis(master, nodes, base).stop()
        raise
    return ReplicatedRedis(master, nodes, base)


@dataclass
class ReplicatedCluster:
    """A Cluster of 3 masters, each with one replica (the roles change after a failover)."""

    nodes: list[RedisServer]
    base: Path

    @property
    def url(self) -> str:
        """A ``cluster=true`` URL naming one node that is alive."""
        for node in self.nodes:
            if node.running:
                return f"redis://127.0.0.1:{node.port}/0?cluster=true"
        raise RuntimeError("every cluster node is down")

    def _alive(self) -> RedisServer:
        return next(n for n in self.nodes if n.running)

    def slot_owner(self, slot: int) -> RedisServer:
        """The node serving ``slot`` as master now (as the live nodes see it)."""
        port = self._alive().port
        for line in _cli(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for spec in parts[8:]:
                lo, _, hi = spec.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    addr = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == addr)
        raise RuntimeError(f"no master serves slot {slot}")

    def keyslot(self, key: str) -> int:
        """``CLUSTER KEYSLOT key``."""
        return int(_cli(self._alive().port, "CLUSTER", "KEYSLOT", key))

    def replica_of(self, master: RedisServer, *, wait: float = 15.0) -> RedisServer:
        """The replica of ``master`` (waits for the master's view to show one: gossip lags)."""
        out = _cli(master.port, "CLUSTER", "MYID")
        deadline = time.monotonic() + wait
        while True:
            for line in _cli(master.port, "CLUSTER", "NODES").splitlines():
                parts = line.split()
                if parts[3] == out and "slave" in parts[2]:
                    port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
            if time.monotonic() > deadline:
                raise RuntimeError(f"master {master.port} has no replica after {wait:g} s")
            time.sleep(0.1)

    def node_id(self, node: RedisServer) -> str:
        """``CLUSTER MYID`` of ``node``."""
        return _cli(node.port, "CLUSTER", "MYID")

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Migrate ``slot`` (and its keys) from its master to the master ``target``.

        The manual resharding steps (``SETSLOT IMPORTING``/``MIGRATING``, ``MIGRATE``,
        ``SETSLOT NODE`` on every master), so a client's slot table is stale until a ``MOVED``.
        """
        source = self.begin_move(slot, target)
        self.finish_move(slot, source, target)

    def begin_move(self, slot: int, target: RedisServer) -> RedisServer:
        """Start migrating ``slot`` to ``target`` and move its keys; the source master.

        Until :meth:`finish_move` the source answers ``ASK`` for the slot's (moved) keys.
        """
        source = self.slot_owner(slot)
        src_id, dst_id = self.node_id(source), self.node_id(target)
        _cli(target.port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        _cli(source.port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        while keys := _cli(source.port, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
            args = ["MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys]
            _cli(source.port, *args)
        return source

    def finish_move(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """Assign ``slot`` to ``target`` on every master (the end of a migration)."""
        dst_id = self.node_id(target)
        masters = [n for n in self.nodes if n.running and info(n.port).get("role") == "master"]
        for node in (target, source, *masters):
            _cli(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
        _wait(f"slot {slot} not moved", lambda: self.slot_owner(slot).port == target.port)

    def healthy(self) -> bool:
        """Every live node says ``cluster_state:ok``."""
        live = [n for n in self.nodes if n.running]
        return all("cluster_state:ok" in _cli(n.port, "CLUSTER", "INFO", timeout=3) for n in live)

    def replicas_online(self) -> bool:
        """Every live master counts its replica online (``WAIT`` would count it)."""
        roles = {n.port: info(n.port).get("role") for n in self.nodes if n.running}
        masters = [p for p, r in roles.items() if r == "master"]
        ready = (online(p) >= 1 and acks_writes(p, 1, cluster=True) for p in masters)
        return len(masters) == 3 and all(ready)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live node says ``cluster_state:ok``."""
        _wait("cluster not ok", self.healthy, timeout)

    def stop(self) -> None:
        """Kill every node and remove the temp dir."""
        try:
            for node in self.nodes:
                node.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_replicated_cluster(node_timeout_ms: int = NODE_TIMEOUT_MS) -> ReplicatedCluster:
    """Start 6 nodes, create a 3-master + 3-replica Cluster, wait until it is in sync."""
    ensure_redis_binaries()
    base = Path(tempfile.mkdtemp(prefix="bs-redis-hacluster-"))
    cluster = ReplicatedCluster([], base)
    try:
        for _ in range(6):
            port = free_cluster_port()
            args = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            args += ["--cluster-node-timeout", str(node_timeout_ms)]
            cluster.nodes.append(_server(base, port, *args))
        addrs = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        create = ["redis-cli", "--cluster", "create", *addrs]
        subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster.wait_healthy()
        # Every master has its replica attached and in sync before any test writes.
        _wait("replicas not online", cluster.replicas_online)
    except BaseException:
        cluster.stop()
        raise
    return cluster
