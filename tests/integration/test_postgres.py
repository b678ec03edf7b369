"""PostgreSQL backend on a real server: fencing, CAS, atomicity, schema, URLs, outages."""

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
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import postgres as pg
from baileys_store.backends._pg_schema import SCHEMA_VERSION
from tests._services.postgres import PostgresDatabase, free_port

Admin = psycopg.AsyncConnection[tuple[Any, ...]]
ADDR = SessionAddr("clinic-1/channel:2", "5511@s.whatsapp.net")


def with_params(dsn: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return dsn + ("&" if "?" in dsn else "?") + query


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def durable(
    dsn: str, schema: str, op_timeout: float = 10.0, **params: object
) -> pg.PostgresDurable:
    url = with_params(dsn, schema=schema, **params)
    cfg = StoreConfig(durable=url, cache=None, op_timeout=op_timeout)
    return pg.from_config(cfg, "durable")


@contextlib.asynccontextmanager
async def opened(backend: pg.PostgresDurable) -> AsyncIterator[pg.PostgresDurable]:
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def schema() -> str:
    return new_schema()


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


# --- fencing -------------------------------------------------------------------------------


async def test_stale_fence_rejected_for_every_write(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    await store.write_keys(ADDR, [KeyWrite("session", "a", b"1")], fence=5)
    await store.save_creds(ADDR, b"creds", fence=5)
    mixed = [KeyWrite("session", "a", b"2"), KeyWrite("pre-key", "1", b"x")]
    stale = [
        store.write_keys(ADDR, mixed, fence=4),
        store.clear_keys(ADDR, fence=4),
        store.save_creds(ADDR, b"other", fence=4),
        store.delete_session(ADDR, fence=4),
    ]
    for call in stale:
        with pytest.raises(errors.FencedError) as info:
            await call
        assert (info.value.token, info.value.current) == (4, 5)
    assert await store.get_keys(ADDR, "session", ["a"]) == {"a": b"1"}
    assert await store.get_keys(ADDR, "pre-key", ["1"]) == {}
    creds = await store.load_creds(ADDR)
    assert creds is not None
    assert (creds.blob, creds.version) == (b"creds", 1)
    await store.write_keys(ADDR, [KeyWrite("session", "a", b"3")])  # unfenced write passes
    await store.write_keys(ADDR, [KeyWrite("session", "a", b"4")], fence=7)
    assert await fence_of(admin, schema, ADDR) == 7
    assert await store.delete_session(ADDR, fence=7) is True


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


# --- compare-and-set ---------------------------------------------------------------------------


@pytest.mark.parametrize("instances", [1, 2])
async def test_cas_race_exactly_one_winner(
    postgres_db: PostgresDatabase, schema: str, instances: int
) -> None:
    backends = [durable(postgres_db.dsn, schema, max_size=4) for _ in range(instances)]
    async with contextlib.AsyncExitStack() as stack:
        for b in backends:
            await stack.enter_async_context(opened(b))
        assert await backends[0].save_creds(ADDR, b"v1", expected_version=0) == 1
        for version in range(1, 6):
            blobs = [f"w{version}-{n}".encode() for n in range(10)]
            results = await asyncio.gather(
                *(
                    backends[n % instances].save_creds(ADDR, b, expected_version=version)
                    for n, b in enumerate(blobs)
                ),
                return_exceptions=True,
            )
            won = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
            assert len(won) == 1, results
            assert results[won[0]] == version + 1
            for n, r in enumerate(results):
                if n != won[0]:
                    assert isinstance(r, errors.ConflictError), r
                    assert (r.expected, r.actual) == (version, version + 1)
            creds = await backends[-1].load_creds(ADDR)
            assert creds is not None
            assert (creds.blob, creds.version) == (blobs[won[0]], version + 1)


async def test_cas_on_missing_session_and_versions_never_go_back(store: pg.PostgresDurable) -> None:
    with pytest.raises(errors.ConflictError) as info:
        await store.save_creds(ADDR, b"x", expected_version=3)
    assert (info.value.expected, info.value.actual) == (3, 0)
    assert await store.load_creds(ADDR) is None
    assert await store.save_creds(ADDR, b"a") == 1
    assert await store.save_creds(ADDR, b"b", expected_version=None) == 2
    await store.clear_keys(ADDR)  # keys only: the creds version stays
    assert await store.save_creds(ADDR, b"c", expected_version=2) == 3


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


async def test_812_pre_keys_in_one_write_and_one_get(store: pg.PostgresDurable) -> None:
    writes = [KeyWrite("pre-key", str(i), i.to_bytes(4, "big") * 30) for i in range(812)]
    await store.write_keys(ADDR, [*writes, KeyWrite("pre-key", "5", None)])  # last write wins
    got = await store.get_keys(ADDR, "pre-key", [w.id for w in writes])
    assert len(got) == 811
    assert "5" not in got
    assert got["811"] == writes[811].blob
    assert await store.clear_keys(ADDR) == 811


# --- schema ------------------------------------------------------------------------------------


async def test_schema_creation_idempotent_and_concurrent(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    backends = [durable(postgres_db.dsn, schema, min_size=0) for _ in range(5)]
    await asyncio.gather(*(b.open() for b in backends))  # racing migrations serialize
    await asyncio.gather(*(b.close() for b in backends))
    async with opened(durable(postgres_db.dsn, schema)) as again:
        await again.write_keys(ADDR, [KeyWrite("session", "a", b"1")])
    assert await fetch(admin, f"SELECT name, value FROM {schema}.meta ORDER BY 1") == [
        ("schema_version", str(SCHEMA_VERSION)),
        ("store_id", again.store_id),
    ]
    assert {b.store_id for b in backends} == {again.store_id}  # the racing openers agree
    tables = await fetch(
        admin, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema
    )
    assert tables == [("keys",), ("leases",), ("meta",), ("sessions",)]
    await admin.execute(
        f"UPDATE {schema}.meta SET value = '{SCHEMA_VERSION + 1}' "
        "WHERE name = 'schema_version'".encode()
    )
    with pytest.raises(errors.UnavailableError, match="newer than this baileys-store"):
        await durable(postgres_db.dsn, schema).open()


async def test_hash_partitioned_keys_table(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    """The README recipe: keys hash-partitioned by (namespace, session_id) before first open."""
    await admin.execute(
        sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.keys ("
            ' namespace text COLLATE "C" NOT NULL, session_id text COLLATE "C" NOT NULL,'
            ' type text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,'
            " value bytea NOT NULL, PRIMARY KEY (namespace, session_id, type, id)"
            ") PARTITION BY HASH (namespace, session_id);"
        ).format(s=sql.Identifier(schema))
    )
    for r in range(4):
        await admin.execute(
            sql.SQL(
                "CREATE TABLE {p} PARTITION OF {s}.keys FOR VALUES WITH (MODULUS 4, REMAINDER {r})"
            ).format(
                p=sql.Identifier(schema, f"keys_p{r}"), s=sql.Identifier(schema), r=sql.Literal(r)
            )
        )
    async with opened(durable(postgres_db.dsn, schema)) as store:
        addrs = [SessionAddr("ns", f"s{i}") for i in range(12)]
        first = [KeyWrite("session", "x", b"1"), *(KeyWrite("pre-key", i, b"p") for i in "12")]
        second = [KeyWrite("session", "x", b"3"), KeyWrite("pre-key", "2", None)]
        for a in addrs:
            await store.write_keys(a, first)
            await store.write_keys(a, second)
            assert await store.get_keys(a, "session", ["x"]) == {"x": b"3"}
            assert await store.get_keys(a, "pre-key", ["1", "2"]) == {"1": b"p"}
        assert await store.clear_keys(addrs[0]) == 2
        assert await store.delete_session(addrs[1]) is True
    per_partition = await fetch(
        admin, f"SELECT tableoid::regclass::text, count(*) FROM {schema}.keys GROUP BY 1"
    )
    assert len(per_partition) > 1
    assert sum(n for _, n in per_partition) == 20
    # schema v3's fillfactor went to each partition (a partitioned parent refuses it)
    options = await fetch(
        admin,
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
        "AND relname LIKE 'keys%' AND relkind IN ('r', 'p') ORDER BY 1",
    )
    assert options == [("keys", None), *((f"keys_p{r}", ["fillfactor=80"]) for r in range(4))]


async def test_list_sessions_pages_in_byte_order(
    store: pg.PostgresDurable, admin: Admin, schema: str
) -> None:
    await admin.execute(
        f"INSERT INTO {schema}.sessions (namespace, session_id) "
        "SELECT 'ns', 's' || lpad(g::text, 5, '0') FROM generate_series(1, 1234) g".encode()
    )
    for sid in ("a", "B", "Z-1"):
        await store.save_creds(SessionAddr("ns", sid), b"c")
    await store.write_keys(SessionAddr("other", "x"), [KeyWrite("session", "1", b"1")])
    listed = [i async for i in store.list_sessions("ns")]
    ids = [i.session_id for i in listed]
    assert len(ids) == 1237
    assert ids[:3] == ["B", "Z-1", "a"]
    assert ids == sorted(ids)
    assert [i.creds_version for i in listed[:3]] == [1, 1, 1]
    everything = [(i.namespace, i.session_id) async for i in store.list_sessions()]
    assert everything == sorted(everything)
    assert everything[-1] == ("other", "x")
    assert len(everything) == 1238


# --- URLs and options --------------------------------------------------------------------------


def test_url_options_parsed() -> None:
    s = pg.parse_postgres_url(
        "postgresql://u:s3cretpw@h:5433/db?schema=my_s&min_size=0&max_size=3&timeout=2.5"
        "&prepare_threshold=5&retries=1&sslmode=prefer&options=-c%20statement_timeout%3D5000",
        op_timeout=7,
    )
    assert (s.schema, s.min_size, s.max_size, s.timeout, s.prepare_threshold, s.retries) == (
        "my_s",
        0,
        3,
        2.5,
        5,
        1,
    )
    # Our parameters are stripped; libpq's are passed on byte for byte.
    assert s.conninfo == (
        "postgresql://u:s3cretpw@h:5433/db?sslmode=prefer&options=-c%20statement_timeout%3D5000"
    )
    assert "s3cretpw" not in repr(s)
    assert s.connect_kwargs == {"connect_timeout": "7", "application_name": "baileys-store"}
    d = pg.parse_postgres_url("postgres://h/db?connect_timeout=3", op_timeout=10)
    assert (d.schema, d.min_size, d.max_size, d.timeout, d.prepare_threshold, d.retries) == (
        "baileys_store",
        1,
        10,
        10.0,
        None,
        3,
    )
    assert d.connect_kwargs == {"application_name": "baileys-store"}


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
    backend = durable(
        postgres_db.dsn,
        schema,
        prepare_threshold=0,
        options="-c%20statement_timeout%3D4321",
    )
    async with opened(backend) as store:
        for n in range(3):  # prepare_threshold=0: prepared on first use, reused after
            await store.write_keys(ADDR, [KeyWrite("session", "a", bytes([n]))])
            assert await store.get_keys(ADDR, "session", ["a"]) == {"a": bytes([n])}
        assert store._pool is not None
        async with store._pool.connection() as conn:
            timeout = await (await conn.execute("SHOW statement_timeout")).fetchone()
            cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
            prepared = await cur.fetchone()
        assert timeout == ("4321ms",)
        assert prepared is not None
        assert prepared[0] > 0


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


async def test_outage_raises_unavailable_never_empty_and_recovers(
    postgres_db: PostgresDatabase, schema: str
) -> None:
    proxy = Proxy(*upstream(postgres_db.dsn))
    await proxy.start()
    url, secret = via(postgres_db.dsn, proxy.listen)
    store = durable(url, schema, op_timeout=3, timeout=0.3, retries=1)
    try:
        async with opened(store):
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
    finally:
        await proxy.cut()


async def test_save_whose_commit_reply_was_lost_is_not_a_conflict(
    postgres_db: PostgresDatabase, schema: str
) -> None:
    """The retry of a CAS save that did commit finds its own creds: success, not a conflict."""
    proxy = Proxy(*upstream(postgres_db.dsn))
    await proxy.start()
    store = durable(via(postgres_db.dsn, proxy.listen)[0], schema, op_timeout=5)
    try:
        async with opened(store):
            assert await store.save_creds(ADDR, b"first", expected_version=0) == 1
            proxy.lose_commit_reply = True
            assert await store.save_creds(ADDR, b"second", expected_version=1) == 2
            assert proxy.lose_commit_reply is False  # the reply really was lost
            creds = await store.load_creds(ADDR)
            assert creds == CredsRecord(b"second", 2)
            proxy.lose_commit_reply = True  # someone else's creds at that version: a conflict
            with pytest.raises(errors.ConflictError):
                await store.save_creds(ADDR, b"third", expected_version=1)
    finally:
        await proxy.cut()


async def test_nothing_listening_or_no_such_database(postgres_db: PostgresDatabase) -> None:
    url, secret = via(postgres_db.dsn, free_port())
    with pytest.raises(errors.UnavailableError, match="postgres") as info:
        await pg.from_config(StoreConfig(durable=url, cache=None), "durable").open()
    assert secret not in str(info.value)
    url, secret = via(postgres_db.dsn, upstream(postgres_db.dsn)[1])
    missing = urlunsplit(urlsplit(url)._replace(path="/bs_missing_db"))
    with pytest.raises(errors.UnavailableError, match="does not exist") as info:
        await pg.from_config(StoreConfig(durable=missing, cache=None), "durable").open()
    assert secret not in str(info.value)
    query_secret = with_params(
        postgres_db.dsn.replace(f":{upstream(postgres_db.dsn)[1]}/", f":{free_port()}/"),
        password="qu3ry-pw",
    )
    with pytest.raises(errors.UnavailableError) as info:
        await pg.from_config(StoreConfig(durable=query_secret, cache=None), "durable").open()
    assert "qu3ry-pw" not in str(info.value)


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


async def test_closed_backend_raises(postgres_db: PostgresDatabase, schema: str) -> None:
    backend = durable(postgres_db.dsn, schema)
    with pytest.raises(errors.StoreClosedError):
        await backend.get_keys(ADDR, "session", ["a"])
    assert (await backend.check()).ok is False
    async with opened(backend):
        assert (await backend.check()).ok is True
    await backend.close()  # idempotent
    with pytest.raises(errors.StoreClosedError):
        await backend.save_creds(ADDR, b"x")


# --- schema version 2: outbox sequence and leases ---------------------------------------------


async def test_version_1_schema_upgrades_in_place(
    postgres_db: PostgresDatabase, admin: Admin, schema: str
) -> None:
    from baileys_store.backends import _pg_schema as q  # noqa: PLC0415 - test-only reach-in

    ident = sql.Identifier(schema)
    await admin.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    await admin.execute(
        sql.SQL("CREATE TABLE {}.meta (name text PRIMARY KEY, value text NOT NULL)").format(ident)
    )
    await admin.execute(sql.SQL(q.MIGRATIONS[1]).format(s=ident))  # a store at version 1
    await admin.execute(sql.SQL("INSERT INTO {}.meta VALUES ('schema_version', '1')").format(ident))
    await admin.execute(
        sql.SQL(
            "INSERT INTO {}.sessions (namespace, session_id, creds, version, fence) "
            "VALUES (%s, %s, %s, 3, %s)"
        ).format(ident),
        (ADDR.namespace, ADDR.session_id, b"c3", 7 << FENCE_SHIFT),
    )
    async with opened(durable(postgres_db.dsn, schema)) as store:
        assert await store.load_creds(ADDR) == CredsRecord(b"c3", 3)  # data kept
        fence = 7 << FENCE_SHIFT
        assert await store.apply_batch(
            ADDR, [KeyWrite("session", "a", b"1")], None, seq=1, fence=fence
        )
        assert not await store.apply_batch(ADDR, [], None, seq=1, fence=fence)
        with pytest.raises(errors.FencedError):
            await store.advance_fence(ADDR, fence - 1)
        assert await store.acquire_lease(ADDR, "p1", 1000) == 8  # above the recorded fence
    assert await fetch(admin, f"SELECT value FROM {schema}.meta WHERE name = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    rows = await fetch(admin, f"SELECT outbox_seq, fence FROM {schema}.sessions")
    assert rows == [(1, 7 << FENCE_SHIFT)]
    # version 3: the keys table leaves room for HOT updates
    assert await fetch(
        admin,
        "SELECT reloptions FROM pg_class c JOIN pg_namespace n ON "
        f"n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND "
        "c.relname = 'keys'",
    ) == [(["fillfactor=80"],)]


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


async def test_concurrent_batches_and_acquirers_on_one_new_session(
    store: pg.PostgresDurable,
) -> None:
    a = SessionAddr("clinic-1/race", "new")
    batches = await asyncio.gather(
        *(
            store.apply_batch(a, [KeyWrite("session", "x", b"%d" % n)], None, seq=1, fence=n)
            for n in range(1, 9)
        ),
        return_exceptions=True,
    )
    applied = [r for r in batches if r is True]
    assert len(applied) == 1, batches
    # The others: a redelivery (False) or fenced by a higher token that won first.
    assert all(r is False or isinstance(r, errors.FencedError) for r in batches if r is not True)
    b = SessionAddr("clinic-1/race", "lease")
    tokens = await asyncio.gather(*(store.acquire_lease(b, f"p{n}", 5000) for n in range(20)))
    assert [t for t in tokens if t is not None] == [1]
