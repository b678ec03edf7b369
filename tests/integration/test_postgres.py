"""PostgreSQL backend on a real server: commit order, injected faults, URLs, outages, the clock.

The durable contract itself runs in ``tests/contract/test_durable_*.py``; the schema and its
migrations are in ``test_postgres_schema.py`` (which reuses the fixtures defined here).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from baileys_store import StoreConfig, errors
from baileys_store._model import CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import postgres as pg
from tests._services.postgres import PostgresDatabase, free_port
from tests.integration._backend_cases import assert_not_leaked, opened

Admin = psycopg.AsyncConnection[tuple[Any, ...]]
ADDR = SessionAddr("clinic-1/channel:2", "5511@s.whatsapp.net")


def with_params(dsn: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return dsn + ("&" if "?" in dsn else "?") + query


def durable(
    dsn: str, schema: str, op_timeout: float = 10.0, **params: object
) -> pg.PostgresDurable:
    url = with_params(dsn, schema=schema, **params)
    return pg.from_config(StoreConfig(durable=url, cache=None, op_timeout=op_timeout), "durable")


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(postgres_db: PostgresDatabase, schema: str) -> AsyncIterator[pg.PostgresDurable]:
    async with opened(durable(postgres_db.dsn, schema)) as backend:
        yield backend


@pytest.fixture
async def admin(postgres_db: PostgresDatabase) -> AsyncIterator[Admin]:
    conn = await psycopg.AsyncConnection.connect(postgres_db.dsn, autocommit=True)
    async with conn:
        yield conn


async def fetch(conn: Admin, query: str, *params: object) -> list[tuple[Any, ...]]:
    return await (await conn.execute(query.encode(), params or None)).fetchall()


async def fence_of(conn: Admin, schema: str, addr: SessionAddr) -> int:
    rows = await fetch(
        conn,
        f"SELECT fence FROM {schema}.sessions WHERE namespace = %s AND session_id = %s",
        addr.namespace,
        addr.session_id,
    )
    return int(rows[0][0])


# --- fencing: the order the server applied the writes in -----------------------------------


async def test_fencing_is_atomic_under_concurrency(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    """Writers with tokens 1..8 race; once a token is recorded no lower one ever writes.

    A trigger logs every write in the order the server applied it (writes of one session are
    serialized by the session row lock, so that is commit order).
    """
    await admin.execute(
        sql.SQL(
            "CREATE TABLE {s}.log (n bigserial PRIMARY KEY, sid text, token int);"
            "CREATE FUNCTION {s}.log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO {log} (sid, token) VALUES "
            "(NEW.session_id, convert_from(NEW.value, 'UTF8')::int); RETURN NEW; END $$;"
            "CREATE TRIGGER log_write AFTER INSERT OR UPDATE ON {s}.keys FOR EACH ROW "
            "WHEN (NEW.type = 'session') EXECUTE FUNCTION {s}.log_write()"
        ).format(s=sql.Identifier(schema), log=sql.Identifier(schema, "log"))
    )
    for rnd in range(3):
        addr = SessionAddr("race", f"r{rnd}")
        outcomes = await asyncio.gather(*(_fenced_writer(store, addr, t) for t in range(1, 9)))
        committed = [t for done, _ in outcomes for t in done]
        assert all(
            current > token
            for (_, current), token in zip(outcomes, range(1, 9), strict=True)
            if current
        )
        rows = await fetch(
            admin, f"SELECT token FROM {schema}.log WHERE sid = %s ORDER BY n", addr.session_id
        )
        log = [t for (t,) in rows]
        assert log == sorted(log), log  # no lower token ever wrote after a higher one
        assert sorted(log) == sorted(committed)
        top = str(max(committed)).encode()
        assert await store.get_keys(addr, "session", ["s"]) == {"s": top}
        assert await store.get_keys(addr, "sender-key", ["g"]) == {"g": top}
        assert await fence_of(admin, schema, addr) == max(committed)


async def _fenced_writer(
    store: pg.PostgresDurable, addr: SessionAddr, token: int
) -> tuple[list[int], int]:
    """Write ``token`` up to 4 times; returns the tokens written and the fence that stopped it."""
    done: list[int] = []
    blob = str(token).encode()
    for _ in range(4):
        writes = [KeyWrite("session", "s", blob), KeyWrite("sender-key", "g", blob)]
        try:
            await store.write_keys(addr, writes, fence=token)
        except errors.FencedError as exc:
            return done, exc.current
        done.append(token)
        await asyncio.sleep(0)
    return done, 0


# --- URLs and options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "op_timeout", "pool", "conninfo", "connect_kwargs"),
    [
        (
            "postgresql://u:s3cretpw@h:5433/db?schema=my_s&min_size=0&max_size=3&timeout=2.5"
            "&prepare_threshold=5&retries=1&sslmode=prefer&options=-c%20statement_timeout%3D5000",
            7,
            ("my_s", 0, 3, 2.5, 5, 1),
            # Our parameters are stripped; libpq's are passed on byte for byte.
            "postgresql://u:s3cretpw@h:5433/db?sslmode=prefer&options=-c%20statement_timeout%3D5000",
            {"connect_timeout": "7", "application_name": "baileys-store"},
        ),
        (
            "postgres://h/db?connect_timeout=3",
            10,
            ("baileys_store", 1, 10, 10.0, None, 3),
            "postgres://h/db?connect_timeout=3",
            {"application_name": "baileys-store"},  # the URL's connect_timeout wins
        ),
    ],
    ids=["every-option", "defaults"],
)
def test_url_options_parsed(
    url: str, op_timeout: float, pool: tuple[object, ...], conninfo: str, connect_kwargs: object
) -> None:
    s = pg.parse_postgres_url(url, op_timeout=op_timeout)
    assert (s.schema, s.min_size, s.max_size, s.timeout, s.prepare_threshold, s.retries) == pool
    assert s.conninfo == conninfo
    assert "s3cretpw" not in repr(s)
    assert s.connect_kwargs == connect_kwargs


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("pool_size=3", '"pool_size"'),
        ("schema=bad-name", "invalid schema"),
        ("schema=" + "x" * 64, "invalid schema"),
        ("min_size=5&max_size=2", "min_size 5 > max_size 2"),
        ("max_size=0", "max_size must be >= 1"),
        ("timeout=soon", "timeout='soon' is not a number"),
        ("timeout=0", "timeout must be"),
        ("prepare_threshold=-1", "prepare_threshold must be"),
        ("retries=1&retries=2", "'retries' is given twice"),
        ("justaname", "NAME=VALUE"),
    ],
)
def test_bad_urls_raise_config_error_without_the_password(query: str, match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match) as info:
        pg.parse_postgres_url(f"postgresql://user:s3cr%21t@h/db?{query}", op_timeout=5)
    assert "s3cr" not in str(info.value)


def test_postgres_cannot_be_the_cache() -> None:
    cfg = StoreConfig(durable="postgresql://h/db", cache=None)
    with pytest.raises(errors.ConfigError, match="durable tier"):
        pg.from_config(cfg, "cache")


async def test_libpq_options_and_prepared_statements_reach_the_server(
    postgres_db: PostgresDatabase, schema: str
) -> None:
    opts = "-c%20statement_timeout%3D4321"
    async with opened(durable(postgres_db.dsn, schema, prepare_threshold=0, options=opts)) as store:
        for n in range(3):  # prepare_threshold=0: prepared on first use, reused after
            await store.write_keys(ADDR, [KeyWrite("session", "a", bytes([n]))])
            assert await store.get_keys(ADDR, "session", ["a"]) == {"a": bytes([n])}
        pool = store._runner.pool
        assert pool is not None
        async with pool.connection() as conn:
            timeout = await (await conn.execute("SHOW statement_timeout")).fetchone()
            cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
            prepared = await cur.fetchone()
        assert timeout == ("4321ms",)
        assert prepared is not None
        assert prepared[0] > 0


# --- atomicity ---------------------------------------------------------------------------------


async def _trap(conn: Admin, schema: str, body: str) -> None:
    """A row trigger on the keys table running ``body`` (PL/pgSQL) for id 'trap'."""
    await conn.execute(
        sql.SQL(
            "CREATE FUNCTION {s}.trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 'trap' THEN " + body + " END IF; RETURN NEW; END $$; "
            "CREATE TRIGGER trap BEFORE INSERT OR UPDATE ON {s}.keys "
            "FOR EACH ROW EXECUTE FUNCTION {s}.trap()"
        ).format(s=sql.Identifier(schema))
    )


async def _state(store: pg.PostgresDurable) -> tuple[object, ...]:
    return (
        await store.get_keys(ADDR, "session", ["a", "b"]),
        await store.get_keys(ADDR, "pre-key", ["1", "2", "trap"]),
        await store.get_keys(ADDR, "sender-key", ["g"]),
    )


BEFORE: tuple[object, ...] = ({"a": b"A1", "b": b"B1"}, {"1": b"P1"}, {})
MIXED = [
    KeyWrite("session", "a", b"A2"),
    KeyWrite("session", "b", None),
    KeyWrite("sender-key", "g", b"G"),
    KeyWrite("pre-key", "1", None),
    KeyWrite("pre-key", "trap", b"T"),
]


async def _seed(store: pg.PostgresDurable) -> None:
    await store.write_keys(
        ADDR,
        [
            KeyWrite("session", "a", b"A1"),
            KeyWrite("session", "b", b"B1"),
            KeyWrite("pre-key", "1", b"P1"),
        ],
        fence=3,
    )


async def test_multi_type_write_failing_midway_leaves_nothing(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    await _seed(store)
    await _trap(admin, schema, "RAISE EXCEPTION 'injected failure';")
    with pytest.raises(errors.UnavailableError, match="injected failure"):
        await store.write_keys(ADDR, MIXED, fence=9)
    assert await _state(store) == BEFORE
    assert await fence_of(admin, schema, ADDR) == 3  # the fence update rolled back too
    await store.write_keys(ADDR, MIXED[:-1], fence=9)  # the same connection pool still works
    assert await _state(store) == ({"a": b"A2"}, {}, {"g": b"G"})


async def test_cancelled_and_timed_out_writes_leave_nothing(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    async with opened(durable(postgres_db.dsn, schema, op_timeout=0.5, max_size=1)) as store:
        await _seed(store)
        await _trap(admin, schema, "PERFORM pg_sleep(3);")
        task = asyncio.create_task(store.write_keys(ADDR, MIXED, fence=9))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(errors.UnavailableError, match=r"within 0\.5s"):
            await store.write_keys(ADDR, MIXED, fence=9)
        # max_size=1: the next operations reuse the interrupted connection.
        assert await _state(store) == BEFORE
        assert await fence_of(admin, schema, ADDR) == 3
        await store.write_keys(ADDR, [KeyWrite("session", "a", b"A3")])
        assert (await _state(store))[0] == {"a": b"A3", "b": b"B1"}
        rows = await fetch(
            admin,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%'",
        )
        assert rows == [(0,)]


# --- outages -----------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy to the test server that can be cut, like a network outage or a crash."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.listen = host, port, free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.lose_commit_reply = False  # next COMMIT reaches the server, its reply is lost

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.listen)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Python 3.11 logs a cancelled connection handler as an error: end quietly instead.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._forward(reader, writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers |= {writer, up_writer}

        muted = False

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            nonlocal muted
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if src is reader and self.lose_commit_reply and b"COMMIT" in data:
                        self.lose_commit_reply, muted = False, True
                        dst.write(data)
                        await asyncio.sleep(0.3)  # the server commits; the client hears nothing
                        writer.transport.abort()
                        break
                    if not muted:
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self.server is not None:
            self.server.close()
            for w in self.writers:
                w.transport.abort()
            self.writers.clear()
            await self.server.wait_closed()
            self.server = None


def via(dsn: str, port: int) -> tuple[str, str]:
    """``dsn`` through 127.0.0.1:``port``, with a password in it (a dummy one under trust auth)."""
    parts = urlsplit(dsn)
    secret = unquote(parts.password or "") or "hunter2pw"
    netloc = f"{quote(unquote(parts.username or 'postgres'))}:{quote(secret)}@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc)), secret


def upstream(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture
async def proxy(postgres_db: PostgresDatabase) -> AsyncIterator[Proxy]:
    """A started proxy to the test server, cut at the end of the test."""
    started = Proxy(*upstream(postgres_db.dsn))
    await started.start()
    yield started
    await started.cut()


async def test_outage_raises_unavailable_never_empty_and_recovers(
    postgres_db: PostgresDatabase, schema: str, proxy: Proxy
) -> None:
    url, secret = via(postgres_db.dsn, proxy.listen)
    async with opened(durable(url, schema, op_timeout=3, timeout=0.3, retries=1)) as store:
        await store.write_keys(ADDR, [KeyWrite("session", "a", b"1")])
        await store.save_creds(ADDR, b"c")
        await proxy.cut()
        for call in (
            store.get_keys(ADDR, "session", ["a"]),
            store.load_creds(ADDR),
            store.write_keys(ADDR, [KeyWrite("session", "a", b"2")]),
        ):
            with pytest.raises(errors.UnavailableError) as info:
                await call
            assert secret not in str(info.value)
            assert info.value.__cause__ is None
            assert info.value.__suppress_context__
        with pytest.raises(errors.UnavailableError):
            async for _ in store.list_sessions():
                pass
        health = await store.check()
        assert health.ok is False
        assert secret not in health.detail
        await proxy.start()  # same port: the pool reconnects by itself
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                assert await store.get_keys(ADDR, "session", ["a"]) == {"a": b"1"}
                break
            except errors.UnavailableError:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
        assert (await store.check()).ok is True


async def test_save_whose_commit_reply_was_lost_is_not_a_conflict(
    postgres_db: PostgresDatabase, schema: str, proxy: Proxy
) -> None:
    """The retry of a CAS save that did commit finds its own creds: success, not a conflict."""
    async with opened(
        durable(via(postgres_db.dsn, proxy.listen)[0], schema, op_timeout=5)
    ) as store:
        assert await store.save_creds(ADDR, b"first", expected_version=0) == 1
        proxy.lose_commit_reply = True
        assert await store.save_creds(ADDR, b"second", expected_version=1) == 2
        assert proxy.lose_commit_reply is False  # the reply really was lost
        assert await store.load_creds(ADDR) == CredsRecord(b"second", 2)
        proxy.lose_commit_reply = True  # someone else's creds at that version: a conflict
        with pytest.raises(errors.ConflictError):
            await store.save_creds(ADDR, b"third", expected_version=1)


async def test_nothing_listening_or_no_such_database(postgres_db: PostgresDatabase) -> None:
    dsn, port = postgres_db.dsn, upstream(postgres_db.dsn)[1]
    refused, secret = via(dsn, free_port())
    missing = urlunsplit(urlsplit(via(dsn, port)[0])._replace(path="/bs_missing_db"))
    in_query = with_params(dsn.replace(f":{port}/", f":{free_port()}/"), password="qu3ry-pw")
    for url, match, hidden in [
        (refused, "postgres", secret),
        (missing, "does not exist", secret),
        (in_query, None, "qu3ry-pw"),
    ]:
        with pytest.raises(errors.UnavailableError, match=match) as info:
            await pg.from_config(StoreConfig(durable=url, cache=None), "durable").open()
        assert_not_leaked(info.value, hidden)


async def _terminate_ours(admin: Admin) -> None:
    killed = await fetch(
        admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'baileys-store' AND datname = current_database()",
    )
    assert killed
    assert all(ok for (ok,) in killed)


@pytest.mark.parametrize("retries", [0, 3])
async def test_terminated_connections_are_retried(
    postgres_db: PostgresDatabase, admin: Admin, schema: str, retries: int
) -> None:
    async with opened(durable(postgres_db.dsn, schema, retries=retries, min_size=2)) as store:
        await store.write_keys(ADDR, [KeyWrite("session", "a", b"1")])
        if retries == 0:  # proof that the retry is what hides the dead connection
            await _terminate_ours(admin)
            with pytest.raises(errors.UnavailableError, match=r"postgres: \w+"):
                await store.write_keys(ADDR, [KeyWrite("session", "a", b"x")])
            return
        for n in range(2):
            await _terminate_ours(admin)
            await store.write_keys(ADDR, [KeyWrite("session", "a", bytes([n]))])
            assert await store.get_keys(ADDR, "session", ["a"]) == {"a": bytes([n])}


# --- leases --------------------------------------------------------------------------------


async def test_lease_expiry_is_the_servers_clock(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    token = await store.acquire_lease(ADDR, "p1", 60_000)
    assert token is not None
    rows = await fetch(admin, f"SELECT expires - clock_timestamp() FROM {schema}.leases")
    assert 50 < rows[0][0].total_seconds() <= 60  # set from the server's own clock
    # Moved into the past on the server: expired for everyone, whatever the hosts' clocks say.
    await admin.execute(f"UPDATE {schema}.leases SET expires = clock_timestamp()".encode())
    assert not await store.renew_lease(ADDR, "p1", token, 1000)
    assert await store.acquire_lease(ADDR, "p2", 1000) == token + 1
