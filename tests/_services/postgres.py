"""A PostgreSQL server for the tests, and a fresh database per test run.

Order of preference: ``POSTGRES_DSN`` (an admin DSN, e.g. ``postgresql://postgres@host/postgres``);
else the machine's server on 127.0.0.1:5432 (user ``postgres``, trust auth) when it answers;
else a throwaway server started here (``initdb`` as the ``postgres`` user in a temp dir, on a
free port; ``apt-get install postgresql`` when no binaries exist), killed at the end whatever
happens. In every case the tests use a database ``bs_test_<random>`` created for this run and
dropped at the end, so nothing of ours is left behind on a shared server.
"""

from __future__ import annotations

import contextlib
import glob
import os
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
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from baileys_store import StoreConfig
from tests.conftest import Backend

_LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (a URL) pointing at ``database`` instead of its own."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def pg_bindir() -> Path:
    """Directory of the server binaries; installs the Debian package when there are none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            env=env,
            capture_output=True,
        )
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _as_postgres(*args: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass
class PostgresServer:
    """An admin DSN plus, for a server started here, the process to stop."""

    admin_dsn: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    workdir: Path | None = None

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb + postgres on a free port in a temp dir, as the ``postgres`` user."""
        bindir = pg_bindir()
        workdir = Path(tempfile.mkdtemp(prefix="bs-pg-"))
        data = workdir / "data"
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        log = (workdir / "postgres.log").open("ab")
        proc = subprocess.Popen(
            _as_postgres(
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", proc, workdir)
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers(server.admin_dsn):
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"postgres did not start: see {workdir / 'postgres.log'}")
            time.sleep(0.1)
        return server

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL of the whole process group; remove the dir."""
        if self.proc is not None:
            for sig in (signal.SIGINT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def create_database(self) -> str:
        """Create ``bs_test_<random>``; returns its name."""
        name = f"bs_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            # Tests never survive a server crash anyway: skip the WAL flush wait on commit.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                    sql.Identifier(name)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass(frozen=True)
class PostgresDatabase:
    """The database of this test run: ``dsn`` for the store, ``server`` for admin work."""

    server: PostgresServer
    name: str
    dsn: str


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """``POSTGRES_DSN``, the local server, or one started for this run."""
    if dsn := os.environ.get("POSTGRES_DSN"):
        yield PostgresServer(dsn)
        return
    if _answers(_LOCAL_DSN):
        yield PostgresServer(_LOCAL_DSN)
        return
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A database created for this test run and dropped at its end."""
    name = postgres_server.create_database()
    try:
        dsn = with_database(postgres_server.admin_dsn, name)
        yield PostgresDatabase(postgres_server, name, dsn)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def backend_postgres(postgres_db: PostgresDatabase) -> Backend:
    """PostgreSQL alone (no cache in front), default schema, this run's database."""
    return Backend("postgres", StoreConfig(durable=postgres_db.dsn, cache=None))


def terminate_backends(dsn: str) -> int:
    """``pg_terminate_backend()`` every other connection to ``dsn``'s database; returns how many.

    Connect with a DSN that reaches the server directly (not through a faulty proxy).
    """
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row is not None else 0
