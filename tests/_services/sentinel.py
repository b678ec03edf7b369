"""A throwaway Redis Sentinel deployment: 1 master + 1 replica ``redis-server`` + 3 sentinels.

All on free loopback ports in a temp dir, no persistence. The sentinels run as
``redis-server sentinel.conf --sentinel`` with writable config files (sentinels rewrite them),
``down-after-milliseconds 1000``, a small ``failover-timeout`` and quorum 2, so a SIGKILLed
master is replaced within a few seconds. Every wait is bounded; :meth:`SentinelSet.stop` kills
every process (each in its own process group) whatever happens.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests._services._process import kill_group
from tests._services.redis import RedisServer, _cli, ensure_redis_binaries, free_port

SERVICE = "bsmaster"
DOWN_AFTER_MS = 1000
_WAIT = 30.0


@dataclass
class SentinelSet:
    """The servers and sentinels of one service (``url()`` builds a ``redis+sentinel://``)."""

    workdir: Path
    servers: list[RedisServer] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    master: RedisServer | None = None

    def url(self, query: str = "", *, scheme: str = "redis+sentinel", db: int = 0) -> str:
        """The store URL for this service (``query`` without the ``?``)."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"{scheme}://{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def sentinel_master(self) -> tuple[str, int] | None:
        """The master the first answering sentinel names (``None``: none answers)."""
        for port in self.sentinel_ports:
            out = _cli(port, "SENTINEL", "get-master-addr-by-name", SERVICE, timeout=3)
            parts = out.split()
            if len(parts) == 2 and parts[1].isdigit():
                return parts[0], int(parts[1])
        return None

    def replica(self) -> RedisServer:
        """A running server that is not the current master."""
        assert self.master is not None
        return next(s for s in self.servers if s is not self.master and s.running)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (like a crash); the killed server."""
        assert self.master is not None
        killed = self.master
        killed.stop()
        return killed

    def wait_failover(self, old: RedisServer, timeout: float = _WAIT) -> RedisServer:
        """Wait until the sentinels name another master that answers as one; that server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            addr = self.sentinel_master()
            if addr is not None and addr[1] != old.port:
                new = next(s for s in self.servers if s.port == addr[1])
                if "role:master" in _cli(new.port, "INFO", "replication", timeout=3):
                    self.master = new
                    return new
            time.sleep(0.1)
        raise RuntimeError("sentinels did not promote a replica in time")

    def restart(self, server: RedisServer) -> None:
        """Start a killed server again on its port (the sentinels make it a replica)."""
        server.start()
        assert self.master is not None
        _cli(server.port, "REPLICAOF", "127.0.0.1", str(self.master.port))

    def wait_synced(self, timeout: float = _WAIT) -> None:
        """Wait until the master has a replica online and the sentinels see it."""
        assert self.master is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = _cli(self.master.port, "INFO", "replication", timeout=3)
            if "connected_slaves:1" in info and "state=online" in info:
                seen = _cli(self.sentinel_ports[0], "SENTINEL", "replicas", SERVICE, timeout=3)
                if str(self.replica().port) in seen:
                    return
            time.sleep(0.1)
        raise RuntimeError("the replica did not sync with the master in time")

    def stop(self) -> None:
        """Kill every server and sentinel (idempotent)."""
        try:
            for proc in self.procs:
                kill_group(proc)
        finally:
            self.procs = []
            for server in self.servers:
                with contextlib.suppress(Exception):
                    server.stop()


def _start_sentinel(workdir: Path, port: int, master_port: int) -> subprocess.Popen[bytes]:
    conf = workdir / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    log = (workdir / f"sentinel-{port}.log").open("ab")
    try:
        return subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def start_sentinels(workdir: Path) -> SentinelSet:
    """Start master, replica and 3 sentinels; wait until the sentinels see both servers."""
    ensure_redis_binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    deployment = SentinelSet(workdir)
    try:
        for _ in range(2):
            port = free_port()
            sdir = workdir / f"redis-{port}"
            sdir.mkdir()
            server = RedisServer(f"redis://127.0.0.1:{port}/0", port, sdir)
            server.start()
            deployment.servers.append(server)
        master, replica = deployment.servers
        deployment.master = master
        _cli(replica.port, "REPLICAOF", "127.0.0.1", str(master.port))
        for _ in range(3):
            port = free_port()
            deployment.sentinel_ports.append(port)
            deployment.procs.append(_start_sentinel(workdir, port, master.port))
        deadline = time.monotonic() + _WAIT
        while deployment.sentinel_master() != ("127.0.0.1", master.port):
            if time.monotonic() > deadline:
                raise RuntimeError("sentinels did not start")
            time.sleep(0.1)
        deployment.wait_synced()
        # Every sentinel must know the others before a failover can get its quorum.
        while not all(
            "num-other-sentinels\n2" in _cli(p, "SENTINEL", "master", SERVICE, timeout=3)
            for p in deployment.sentinel_ports
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("sentinels did not discover each other")
            time.sleep(0.1)
    except BaseException:
        deployment.stop()
        raise
    return deployment


@contextlib.contextmanager
def sentinels(workdir: Path) -> Iterator[SentinelSet]:
    """A deployment for one test (or module), stopped after it."""
    deployment = start_sentinels(workdir)
    try:
        yield deployment
    finally:
        deployment.stop()
