"""Throwaway ``redis-server`` processes for the tests: one standalone server and a 3-node Cluster.

Both are session-scoped and started on free loopback ports in temp dirs, with no persistence.
``REDIS_URL`` / ``REDIS_CLUSTER_URL`` point the tests at existing servers instead (then the
harness never flushes, stops or restarts them). Fault tests get the :class:`RedisServer` object
and may ``stop()`` (SIGKILL) and ``start()`` it again on the same port.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from baileys_store import StoreConfig
from tests._services._process import kill_group
from tests.conftest import Backend

_START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20_000, 55_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def ensure_redis_binaries() -> None:
    """Install the Debian ``redis-server`` package when the binaries are missing."""
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "redis-server"], check=True, env=env, capture_output=True
    )


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return out.stdout.strip()


@dataclass
class RedisServer:
    """One ``redis-server`` on 127.0.0.1 owned by the harness (``managed``) or external."""

    url: str
    port: int = 0
    workdir: Path | None = None
    extra_args: tuple[str, ...] = ()
    managed: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the server (again) on its port and wait until it answers PING."""
        if not self.managed:
            raise RuntimeError("external Redis (REDIS_URL): the harness does not control it")
        if self.running:
            return
        assert self.workdir is not None
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir), *self.extra_args]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: see {log.name}")
            if _cli(self.port, "PING", timeout=2) == "PONG":
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server's process group (SIGKILL by default, like a crash) and reap it."""
        if self.proc is None:
            return
        kill_group(self.proc, sig)
        self.proc = None

    @property
    def running(self) -> bool:
        """True while the harness-started process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def flushall(self) -> None:
        """Empty the server; only allowed on a server the harness started."""
        if self.managed and self.running:
            _cli(self.port, "FLUSHALL")


def start_redis(base: Path, *extra_args: str, cluster: bool = False) -> RedisServer:
    """Start a managed server on a free port (retried if the port was taken meanwhile)."""
    ensure_redis_binaries()
    last: Exception | None = None
    for _ in range(3):
        port = free_cluster_port() if cluster else free_port()
        args = extra_args
        if cluster:
            args += (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "5000",
            )
        workdir = base / f"redis-{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        server = RedisServer(f"redis://127.0.0.1:{port}/0", port, workdir, args)
        try:
            server.start()
        except RuntimeError as exc:
            server.stop()
            last = exc
            continue
        return server
    raise RuntimeError(f"could not start redis-server: {last}")


@dataclass
class RedisClusterServers:
    """A local Cluster of masters (no replicas); ``url`` carries ``cluster=true``."""

    url: str
    nodes: list[RedisServer]

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()


def start_cluster(base: Path, size: int = 3) -> RedisClusterServers:
    """Start ``size`` cluster nodes, create the cluster, wait for ``cluster_state:ok``."""
    nodes: list[RedisServer] = []
    try:
        for _ in range(size):
            nodes.append(start_redis(base, cluster=True))
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        create = ["redis-cli", "--cluster", "create", *addrs]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in _cli(n.port, "CLUSTER", "INFO") for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return RedisClusterServers(f"redis://127.0.0.1:{nodes[0].port}/0?cluster=true", nodes)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The standalone test server (or ``REDIS_URL``)."""
    if url := os.environ.get("REDIS_URL"):
        yield RedisServer(url, managed=False)
        return
    base = Path(tempfile.mkdtemp(prefix="bs-redis-"))
    server = start_redis(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """The 3-master test Cluster (or ``REDIS_CLUSTER_URL``, which must carry ``cluster=true``)."""
    if url := os.environ.get("REDIS_CLUSTER_URL"):
        yield RedisClusterServers(url, [])
        return
    base = Path(tempfile.mkdtemp(prefix="bs-redis-cluster-"))
    cluster = start_cluster(base)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def with_query(url: str, **params: str) -> str:
    """``url`` with extra query parameters appended."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + query


def unique_prefix() -> str:
    """A key prefix no other test uses, so ``list_sessions()`` of all namespaces is isolated."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def backend_redis(redis_server: RedisServer) -> Backend:
    """Redis-only durable tier (no cache in front)."""
    url = with_query(redis_server.url, prefix=unique_prefix())
    return Backend("redis", StoreConfig(durable=url, cache=None))


@pytest.fixture
def backend_redis_cluster(redis_cluster: RedisClusterServers) -> Backend:
    """Redis-only durable tier on the 3-node Cluster."""
    url = with_query(redis_cluster.url, prefix=unique_prefix())
    return Backend("redis-cluster", StoreConfig(durable=url, cache=None))


@pytest.fixture
def backend_redis_cache(redis_server: RedisServer, tmp_path: Path) -> Backend:
    """SQLite durable tier with the Redis cache in front."""
    url = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    return Backend(
        "redis-cache", StoreConfig(durable=f"sqlite:///{tmp_path / 'store.db'}", cache=url)
    )
