"""A PostgreSQL primary and a streaming standby for the failover tests.

Everything lives in one temp dir owned by ``postgres`` (PostgreSQL refuses to run as root):
``initdb`` the primary, ``pg_basebackup -R`` the standby from it, both on free loopback ports.
``start(sync=True)`` makes the standby synchronous (``synchronous_standby_names='*'``, set on
the primary only once the standby streams, so the promoted standby does not wait for a standby
of its own). :meth:`PgPair.kill_primary` is a SIGKILL of the primary's whole process group (a
crash: no shutdown checkpoint, the walsender dies with it); :meth:`PgPair.promote` is
``pg_ctl promote``. :meth:`PgPair.stop` kills every process started here and removes the dir,
whatever state the pair is in. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tests._services._process import kill_group
from tests._services.postgres import _as_postgres, free_port, pg_bindir

_WAIT = 30.0  # seconds for a server to answer, a standby to stream, a promotion to end


def _wait_for(what: str, ok: object, timeout: float = _WAIT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():  # type: ignore[operator]
                return
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"pg pair: {what} not within {timeout}s")
        time.sleep(0.05)


class PgPair:
    """A primary and its streaming standby, started and stopped by the tests.

    Attributes:
        primary_port: The primary's port (dead after :meth:`kill_primary`).
        standby_port: The standby's port (the primary after :meth:`promote`).
        workdir: The temp dir holding both data dirs, sockets and logs.
    """

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.primary_port = 0
        self.standby_port = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._demoted_at: object = None
        self._bindir = pg_bindir()

    # -- addresses -------------------------------------------------------------------------

    @property
    def urls(self) -> tuple[str, str]:
        """Admin URLs (database ``postgres``) of the primary and of the standby."""
        return self.url_of(self.primary_port), self.url_of(self.standby_port)

    @staticmethod
    def url_of(port: int, database: str = "postgres") -> str:
        """A single-host admin URL."""
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def multi_host_url(self, database: str, **query: str) -> str:
        """``postgresql://postgres@primary,standby/database?target_session_attrs=read-write``."""
        params = {"target_session_attrs": "read-write", **query}
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        hosts = f"127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
        return f"postgresql://postgres@{hosts}/{database}?{qs}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, sync: bool) -> PgPair:
        """initdb + primary, pg_basebackup -R + standby, streaming (synchronous if ``sync``)."""
        try:
            self._start(sync)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, sync: bool) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bs-pgpair-"))
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        primary, standby = self.workdir / "primary", self.workdir / "standby"
        self._run(
            "initdb",
            "-D",
            str(primary),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.primary_port = free_port()
        while (port := free_port()) == self.primary_port:
            pass
        self.standby_port = port
        self._spawn("primary", primary, self.primary_port)
        _wait_for("primary answering", lambda: _answers(self.urls[0]))
        self._run(
            "pg_basebackup",
            "-D",
            str(standby),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
        )
        self._spawn("standby", standby, self.standby_port)
        _wait_for("standby streaming", lambda: self._replication_state() is not None)
        if sync:
            with self.admin(self.primary_port) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
                conn.execute("SELECT pg_reload_conf()")
            _wait_for("standby synchronous", lambda: self._replication_state() == "sync")

    def _run(self, tool: str, *args: str) -> None:
        cmd = _as_postgres(str(self._bindir / tool), *args)
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).decode(errors="replace")[-800:]
            raise RuntimeError(f"pg pair: {tool} failed ({done.returncode}): {tail}")

    def _spawn(self, name: str, data: Path, port: int) -> None:
        assert self.workdir is not None
        with (self.workdir / f"{name}.log").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                _as_postgres(
                    str(self._bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(self.workdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # A SIGKILL is not an OS crash: the page cache keeps what was written, so
                    # fsync only costs time here.
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=100",
                    "-c",
                    "wal_sender_timeout=5s",
                    "-c",
                    "wal_receiver_status_interval=1s",
                    # The standby retries a lost primary every 5 s by default; a promotion
                    # signalled during that sleep was measured to wait for it.
                    "-c",
                    "wal_retrieve_retry_interval=100ms",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: kill_group reaches every backend
            )

    def _replication_state(self) -> str | None:
        with self.admin(self.primary_port) as conn:
            row = conn.execute(
                "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchone()
        return None if row is None else str(row[0])

    def admin(self, port: int) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit admin connection to one server (close it: use ``with``)."""
        return psycopg.connect(self.url_of(port), autocommit=True, connect_timeout=3)

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` on the primary (replicated to the standby)."""
        with self.admin(self.primary_port) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def kill_primary(self) -> None:
        """Crash the primary: every process of it SIGKILLed at the same instant, then reaped.

        Each backend is a session of its own (PostgreSQL calls ``setsid`` in every child), so
        a signal to the process group reaches the postmaster only, and a backend busy with a
        statement would finish it (and even commit) before noticing its parent's death. So the
        whole tree is frozen (SIGSTOP, parents before their children are listed) and then
        killed, like a machine losing power.
        """
        proc = self._procs.pop("primary", None)
        if proc is None:
            return
        tree = _freeze_tree(proc.pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_group(proc)

    def pause_replication(self) -> None:
        """SIGSTOP the primary's walsender: the WAL written from now on stays on the primary
        (an asynchronous standby falls behind; a synchronous one holds every commit).

        The sender, not the standby's receiver: WAL already sent sits in the receiver's socket
        buffer and would still be read after the primary's death.
        """
        for pid in self._processes("primary", b"walsender"):
            os.kill(pid, signal.SIGSTOP)

    def resume_replication(self) -> None:
        """SIGCONT the walsender stopped by :meth:`pause_replication` (if still alive)."""
        for pid in self._processes("primary", b"walsender"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _processes(self, server: str, title: bytes) -> list[int]:
        proc = self._procs.get(server)
        if proc is None:
            return []
        found = []
        for pid in _descendants(proc.pid):
            with contextlib.suppress(OSError):
                if title in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return found

    def demote_primary(self) -> None:
        """Turn the primary read-only for every session, as a switchover's first step.

        PostgreSQL cannot turn a primary into a standby online; ``default_transaction_read_only``
        reloaded into every backend makes each new transaction fail its first write with
        SQLSTATE 25006, which is what a client of a demoted server sees.
        """
        with self.admin(self.primary_port) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            row = conn.execute("SELECT pg_reload_conf(), clock_timestamp()").fetchone()
        assert row is not None
        self._demoted_at = row[1]

    def wait_standby_caught_up(self) -> None:
        """Wait for the transactions begun before the demotion, then for the standby to replay
        everything the primary wrote (nothing acknowledged is then missing on the standby)."""
        with self.admin(self.primary_port) as conn:

            def settled() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE xact_start <= %s"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                    (self._demoted_at,),
                ).fetchone()
                return row is not None and row[0] == 0

            _wait_for("writers begun before the demotion", settled)
            row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        lsn = row[0]

        def replayed() -> bool:
            with self.admin(self.standby_port) as conn:
                got = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                row = got.fetchone()
            return row is not None and row[0] is True

        _wait_for("standby caught up", replayed)

    def promote(self) -> None:
        """``pg_ctl promote -w`` the standby, then wait until it accepts writes."""
        assert self.workdir is not None
        self._run(
            "pg_ctl", "promote", "-w", "-t", str(int(_WAIT)), "-D", str(self.workdir / "standby")
        )

        def writable() -> bool:
            with self.admin(self.standby_port) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return row is not None and row[0] is False

        _wait_for("standby promoted", writable)

    def stop(self) -> None:
        """SIGKILL every server started here (every process of it) and remove the temp dir.

        Idempotent.
        """
        try:
            while self._procs:
                _, proc = self._procs.popitem()
                with contextlib.suppress(Exception):
                    for pid in _freeze_tree(proc.pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    kill_group(proc)
        finally:
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _descendants(root: int) -> list[int]:
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(_children(pid))
    return tree


def _freeze_tree(root: int) -> list[int]:
    """SIGSTOP ``root`` and all its descendants (each before its children are listed, so none
    forks meanwhile); returns them all."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        tree.append(pid)
        todo.extend(_children(pid))
    return tree


def _answers(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=2) as conn:
        conn.execute("SELECT 1")
    return True
