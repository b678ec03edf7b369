"""A throwaway ``nats-server -js`` for the broker-outbox tests, and a NATS hybrid Backend.

One server per test session, on a free loopback port with its JetStream store in a temp dir;
fault tests ``stop()`` it (SIGKILL, process group) and ``start()`` it again on the same port and
store dir, so what the stream stored survives like after a crash. Every test gets its own
stream and subject prefix (:func:`unique_outbox`), so tests never see each other's entries.
"""

from __future__ import annotations

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
from tests._services.redis import RedisServer, free_port, unique_prefix, with_query
from tests.conftest import Backend

NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
_START_TIMEOUT = 15.0


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


@dataclass
class NatsServer:
    """One ``nats-server -js`` the harness owns (``stop()`` is a SIGKILL)."""

    port: int
    store_dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (again) on the same port and store dir; wait until it greets."""
        if self.running:
            return
        args = [NATS_BIN, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1"]
        args += ["-p", str(self.port)]
        log = (self.store_dir.parent / "nats.log").open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server on port {self.port} exited: see {log.name}")
            if _answers(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server on port {self.port} did not answer")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server's process group and reap it."""
        if self.proc is not None:
            kill_group(self.proc, sig)
            self.proc = None

    @property
    def running(self) -> bool:
        """True while the harness-started process is alive."""
        return self.proc is not None and self.proc.poll() is None


def start_nats(base: Path) -> NatsServer:
    """A managed server on a free port (retried if the port was taken meanwhile)."""
    for attempt in range(5):
        server = NatsServer(free_port(), base / f"js{attempt}")
        server.store_dir.mkdir(parents=True)
        try:
            server.start()
        except RuntimeError:
            server.stop()
            continue
        return server
    raise RuntimeError("could not start nats-server")


def unique_outbox(url: str, **options: str) -> str:
    """``url`` with a stream and subject prefix no other test uses."""
    tag = uuid.uuid4().hex[:10]
    query = "&".join(
        f"{k}={v}" for k, v in {"stream": f"T{tag}", "prefix": f"t{tag}", **options}.items()
    )
    return f"{url}?{query}"


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """The broker of the test session (its own ``nats-server -js``, not the machine's)."""
    base = Path(tempfile.mkdtemp(prefix="bs-nats-"))
    server = start_nats(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def nats_config(redis_url: str, outbox: str, db: Path, **overrides: object) -> StoreConfig:
    """SQLite under a Redis cache, write-behind, with the NATS outbox."""
    return StoreConfig(
        durable=f"sqlite:///{db}",
        cache=with_query(redis_url, prefix=unique_prefix(), ttl="600"),
        write_mode="write-behind",
        outbox=outbox,
        **overrides,
    )


@pytest.fixture
def backend_hybrid_nats(
    redis_server: RedisServer, nats_server: NatsServer, tmp_path: Path
) -> Backend:
    """SQLite under a Redis cache in write-behind mode, entries also in NATS JetStream."""
    nats_server.start()  # a fault test may have killed it
    config = nats_config(redis_server.url, unique_outbox(nats_server.url), tmp_path / "store.db")
    return Backend("hybrid-nats", config)
