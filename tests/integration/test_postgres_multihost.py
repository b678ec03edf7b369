"""PostgreSQL multi-host URLs: parsing, validation, and a dead host skipped on a real server.

The failover itself (a standby promoted under load) is in ``tests/fault/test_pg_failover.py``.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors as pgerr

from baileys_store import StoreConfig, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends import postgres as pg
from baileys_store.backends.postgres._run import is_connection_error, transient
from tests._services.postgres import PostgresDatabase, free_port
from tests.integration._backend_cases import opened

ADDR = SessionAddr("ns", "5511@s.whatsapp.net")
SECRET = "s3cr%21t"  # as written in the URL; "s3cr!t" decoded


def parse(url: str) -> pg.PgSettings:
    return pg.parse_postgres_url(url, op_timeout=5)


@pytest.mark.parametrize(
    ("url", "hosts", "attrs", "added"),
    [
        (
            "postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
            ("h1:5432", "h2:5433"),
            "read-write",
            None,
        ),
        # Several hosts, no target_session_attrs: read-write is added (libpq's default is any).
        ("postgresql://h1,h2:6000/db", ("h1:5432", "h2:6000"), "read-write", "read-write"),
        ("postgresql:///db?host=a,b&port=1,2", ("a:1", "b:2"), "read-write", "read-write"),
        ("postgresql:///db?host=a,b,c&port=7", ("a:7", "b:7", "c:7"), "read-write", "read-write"),
        (
            "postgresql://h1:1,h2:2/db?target_session_attrs=any&load_balance_hosts=random",
            ("h1:1", "h2:2"),
            "any",
            None,
        ),
        (
            "postgresql://h1:1,h2:2/db?target_session_attrs=primary",
            ("h1:1", "h2:2"),
            "primary",
            None,
        ),
        ("postgresql://h/db", ("h:5432",), "any", None),  # one host: libpq's own default
        ("postgresql://[::1]:5433/db", ("::1:5433",), "any", None),
    ],
)
def test_multi_host_urls_pass_through(
    url: str, hosts: tuple[str, ...], attrs: str, added: str | None
) -> None:
    s = parse(url)
    assert s.conninfo == url  # hosts, ports and libpq options go to psycopg unchanged
    assert s.hosts == hosts
    assert s.target_session_attrs == attrs
    assert s.connect_kwargs.get("target_session_attrs") == added
    assert s.wants_primary is (attrs in ("read-write", "primary"))


@pytest.mark.parametrize(
    ("netloc", "query", "match"),
    [
        ("h1,h2", "target_session_attrs=master", "target_session_attrs='master' is not one of"),
        ("h1,h2", "load_balance_hosts=yes", "load_balance_hosts='yes' is not one of"),
        ("h1:1,h2:x", "", "port #2 'x' is not a port number"),
        ("h1:99999", "", "port #1 '99999' is not a port number"),
        ("", "host=a,b,c&port=1,2", "names 3 hosts but 2 ports"),
        ("h1:5432,,h3", "", "host #2 of 3 is empty"),
    ],
)
def test_bad_multi_host_urls_name_the_problem_not_the_password(
    netloc: str, query: str, match: str
) -> None:
    url = f"postgresql://user:{SECRET}@{netloc}/db" + (f"?{query}" if query else "")
    with pytest.raises(errors.ConfigError, match=match) as info:
        parse(url)
    assert "s3cr" not in str(info.value)


def test_failover_errors_are_retried_and_classified() -> None:
    """25006 (a read-only server) is retried without counting as a lost connection (nothing
    was applied); a dropped connection and an admin shutdown are retried as possibly applied;
    a cancelled query is not retried (op_timeout already ran out)."""
    read_only = pgerr.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")
    assert transient(read_only)
    assert not is_connection_error(read_only)
    for exc in (
        pgerr.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        pgerr.ConnectionFailure("connection failure"),
    ):
        assert transient(exc), exc
        assert is_connection_error(exc), exc
    assert not transient(pgerr.QueryCanceled("canceling statement due to user request"))
    assert not transient(pgerr.UniqueViolation("duplicate key"))


def _with_hosts(dsn: str, netloc_hosts: str, query: str) -> str:
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@{netloc_hosts}" if user else netloc_hosts
    sep = "&" if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=parts.query + sep + query))


@pytest.mark.parametrize(
    "query",
    ["", "target_session_attrs=read-write", "load_balance_hosts=random"],
    ids=["default", "read-write", "random-order"],
)
async def test_a_dead_host_is_skipped_for_the_live_one(
    postgres_db: PostgresDatabase, query: str
) -> None:
    parts = urlsplit(postgres_db.dsn)
    if parts.hostname is None:
        pytest.fail("the PostgreSQL DSN needs a TCP host for a multi-host URL")
    live = f"{parts.hostname}:{parts.port or 5432}"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    query = "&".join(filter(None, [query, f"schema=t_{uuid.uuid4().hex[:12]}"]))
    url = _with_hosts(postgres_db.dsn, f"{dead},{live}", query)
    backend = pg.from_config(StoreConfig(durable=url, cache=None, op_timeout=5), "durable")
    async with opened(backend) as store:
        await store.write_keys(ADDR, [KeyWrite("session", "1.0", b"v1")])
        assert await store.get_keys(ADDR, "session", ["1.0"]) == {"1.0": b"v1"}
        health = await store.check()
        assert health.ok, health
        assert f"server={parts.hostname}:{parts.port or 5432}" in health.detail, health


async def test_only_dead_hosts_raise_unavailable_without_the_password(
    postgres_db: PostgresDatabase,
) -> None:
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    url = f"postgresql://user:{SECRET}@{dead}/db?target_session_attrs=read-write"
    backend = pg.from_config(StoreConfig(durable=url, cache=None, op_timeout=3), "durable")
    with pytest.raises(errors.UnavailableError) as info:
        await backend.open()
    await backend.close()
    assert "s3cr" not in str(info.value)
