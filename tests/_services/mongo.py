"""Throwaway MongoDB-protocol servers for the tests: SecantusDB (``secantusd-py``) in memory.

``mongo_server`` (session-scoped) starts one SecantusDB on a free loopback port with in-memory
storage; it presents itself as a single-node replica set, so the backend uses transactions.
``MONGODB_URI`` points the tests at an existing deployment instead (then the harness never stops
it, and drops the databases it created at the end). Every ``backend_mongodb`` gets a database of
its own, named after the test run, so listings of every namespace see only that test's sessions.
The process group is killed at the end, even when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from baileys_store import StoreConfig
from tests._services._process import kill_group
from tests.conftest import Backend

_START_TIMEOUT = 30.0
_RUN = uuid.uuid4().hex[:8]
_COUNTER = itertools.count(1)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secantusd() -> str:
    """``secantusd-py`` from the virtualenv running the tests."""
    path = Path(sys.executable).parent / "secantusd-py"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: pip install secantusdb==0.7.0b3")
    return str(path)


def with_database(uri: str, database: str, **options: str) -> str:
    """``uri`` with its path set to ``database`` and ``options`` merged into the query."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(options)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", urlencode(query), ""))


def new_database() -> str:
    """A database name no other test (of this or another run) uses."""
    return f"bst_{_RUN}_{next(_COUNTER)}"


def _pings(uri: str, timeout_ms: int = 300) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


@dataclass
class MongoServer:
    """A SecantusDB process owned by the harness (``managed``), or an external deployment."""

    uri: str
    port: int = 0
    standalone: bool = False
    managed: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    databases: list[str] = field(default_factory=list)
    workdir: Path | None = None
    log: Path | None = None

    def start(self) -> None:
        """Start the server on its port and wait until it answers ``ping``."""
        if not self.managed:
            raise RuntimeError("external MongoDB (MONGODB_URI): the harness does not control it")
        if self.running:
            return
        args = [secantusd(), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--storage-path", ":memory:", "--log-level", "WARNING", "--enable-test-commands"]
        if self.standalone:
            args.append("--standalone")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"bs-mongo-{self.port}-"))
        self.log = self.workdir / "secantusd.log"
        # ":memory:" storage is a temp dir removed only on a clean shutdown; pointing TMPDIR at
        # our workdir lets discard() remove it after a SIGKILL too.
        env = {**os.environ, "TMPDIR": str(self.workdir)}
        with self.log.open("ab") as log:
            # Own session = own process group, so stop() reaches any child it forks.
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                tail = self.log.read_text(errors="replace")[-600:]
                raise RuntimeError(f"secantusd-py on port {self.port} exited:\n{tail}")
            if _pings(self.uri):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"secantusd-py on port {self.port} did not answer ping")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server's process group (SIGKILL by default, like a crash) and reap it."""
        if self.proc is None:
            return
        kill_group(self.proc, sig)
        self.proc = None

    def discard(self) -> None:
        """Stop the server and remove its working directory (data and log)."""
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """True while the harness-started process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def url(self, database: str | None = None, **options: str) -> str:
        """A backend URL on a fresh (or the given) database, with extra URI options."""
        database = database or new_database()
        self.databases.append(database)
        return with_database(self.uri, database, **options)

    def drop_databases(self) -> None:
        """Drop every database handed out (for an external deployment)."""
        client: MongoClient[dict[str, object]] = MongoClient(
            self.uri, serverSelectionTimeoutMS=5000
        )
        try:
            for name in self.databases:
                with contextlib.suppress(PyMongoError):
                    client.drop_database(name)
        finally:
            client.close()


def start_secantus(*, standalone: bool = False) -> MongoServer:
    """Start a managed SecantusDB on a free port (retried if the port was taken meanwhile)."""
    last: Exception | None = None
    for _ in range(3):
        port = free_port()
        server = MongoServer(f"mongodb://127.0.0.1:{port}/", port, standalone=standalone)
        try:
            server.start()
        except RuntimeError as exc:
            server.discard()
            last = exc
            continue
        return server
    raise RuntimeError(f"could not start secantusd-py: {last}")


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """The test deployment: SecantusDB as a single-node replica set, or ``MONGODB_URI``."""
    if uri := os.environ.get("MONGODB_URI"):
        server = MongoServer(uri, managed=False)
        try:
            yield server
        finally:
            server.drop_databases()
        return
    server = start_secantus()
    try:
        yield server
    finally:
        server.discard()


@pytest.fixture
def backend_mongodb(mongo_server: MongoServer) -> Backend:
    """MongoDB durable tier on its own database, no cache in front (every read hits MongoDB)."""
    return Backend("mongodb", StoreConfig(durable=mongo_server.url(), cache=None))
