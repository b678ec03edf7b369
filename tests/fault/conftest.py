"""Fixtures of the fault suite: real servers the tests may cut off, kill and restart.

Each fixture puts a :class:`FaultProxy` in front of its server; the store under test connects
through ``.url`` / ``.dsn`` and the test injects faults with ``.proxy`` (network) or ``.server``
(process). Servers and proxies are stopped at teardown even when a test fails. Every test gets a
fresh proxy in ``pass`` mode and a running server (a previous test may have killed it).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests._services.mongo import MongoServer, _pings, free_port, secantusd, with_database
from tests._services.postgres import PostgresServer, terminate_backends
from tests._services.postgres import with_database as pg_with_database
from tests._services.redis import RedisServer, start_redis
from tests.fault._proxy import FaultProxy

_START_TIMEOUT = 30.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave ``soak`` tests out unless a ``-m`` expression asks for markers (as pyproject says)."""
    if config.getoption("markexpr", ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


@dataclass
class FaultRedis:
    """A dedicated redis-server (``server.stop()`` is a SIGKILL) behind ``proxy``."""

    server: RedisServer
    proxy: FaultProxy

    @property
    def url(self) -> str:
        """The server's URL through the proxy."""
        return self.proxy.url_for(self.server.url)

    @property
    def direct_url(self) -> str:
        """The server's own URL (around the proxy)."""
        return self.server.url


@dataclass
class FaultPostgres:
    """A database of its own on the test PostgreSQL server, behind ``proxy``."""

    server: PostgresServer
    database: str
    direct_dsn: str
    proxy: FaultProxy

    @property
    def dsn(self) -> str:
        """The database's DSN through the proxy."""
        return self.proxy.url_for(self.direct_dsn)

    def terminate_backends(self) -> int:
        """Terminate every connection to the database (ours excepted); returns how many."""
        return terminate_backends(self.direct_dsn)


@dataclass
class DiskMongoServer(MongoServer):
    """SecantusDB on a WiredTiger directory that survives ``stop()`` + ``start()``.

    ``--sync-on-commit`` makes every commit durable at once: without it a SIGKILL loses the
    commits WiredTiger had not yet flushed (measured: all of a fresh server's data).
    """

    storage: Path = field(default_factory=Path)

    def start(self) -> None:
        """Start (again) on the same port and storage and wait until it answers ``ping``."""
        if self.running:
            return
        assert self.workdir is not None
        self.log = self.workdir / "secantusd.log"
        args = [
            secantusd(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
            "--enable-test-commands",
        ]
        with self.log.open("ab") as log:
            # Own session = own process group, so stop() reaches any child it forks.
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"secantusd-py exited:\n{self.log.read_text()[-600:]}")
            if _pings(self.uri):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"secantusd-py on port {self.port} did not answer ping")


@dataclass
class FaultMongo:
    """A dedicated SecantusDB (``server.stop()`` SIGKILLs it, ``start()`` keeps its data)."""

    server: DiskMongoServer
    proxy: FaultProxy

    def url(self, database: str | None = None) -> str:
        """A fresh (or the given) database through the proxy.

        ``directConnection=true``: the server presents itself as a replica set and the driver
        would otherwise follow its advertised address, around the proxy.
        """
        return self.proxy.url_for(self.server.url(database, directConnection="true"))

    def direct_url(self, database: str) -> str:
        """The database on the server's own address."""
        return with_database(self.server.uri, database, directConnection="true")


@pytest.fixture(scope="module")
def fault_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, never the shared one.

    Fault tests kill it, so even when ``REDIS_URL`` names an external server the module starts
    its own throwaway ``redis-server`` (the Debian package is installed when missing).
    """
    server = start_redis(tmp_path_factory.mktemp("fault-redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_redis(fault_redis_server: RedisServer) -> Iterator[FaultRedis]:
    """The module's redis-server, running and empty, behind a fresh proxy."""
    fault_redis_server.start()
    fault_redis_server.flushall()
    proxy = FaultProxy("127.0.0.1", fault_redis_server.port).start()
    try:
        yield FaultRedis(fault_redis_server, proxy)
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def fault_postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database created for this module and dropped (connections forced out) at its end."""
    name = postgres_server.create_database()
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def fault_postgres(
    postgres_server: PostgresServer, fault_postgres_database: str
) -> Iterator[FaultPostgres]:
    """The module's database behind a fresh proxy (to the server's host and port)."""
    direct = pg_with_database(postgres_server.admin_dsn, fault_postgres_database)
    parts = urlsplit(direct)
    if parts.hostname is None:
        pytest.fail(f"the PostgreSQL DSN needs a TCP host for the fault proxy: {parts.scheme}")
    proxy = FaultProxy(parts.hostname, parts.port or 5432).start()
    try:
        yield FaultPostgres(postgres_server, fault_postgres_database, direct, proxy)
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def fault_mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskMongoServer]:
    """A SecantusDB of this module's own on disk (a restart keeps the data), even with
    ``MONGODB_URI`` set: fault tests kill it."""
    workdir = tmp_path_factory.mktemp("fault-mongo")
    port = free_port()
    server = DiskMongoServer(
        f"mongodb://127.0.0.1:{port}/", port, workdir=workdir, storage=workdir / "data"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_mongo(fault_mongo_server: DiskMongoServer) -> Iterator[FaultMongo]:
    """The module's SecantusDB, running, behind a fresh proxy."""
    fault_mongo_server.start()
    proxy = FaultProxy("127.0.0.1", fault_mongo_server.port).start()
    try:
        yield FaultMongo(fault_mongo_server, proxy)
    finally:
        proxy.stop()
