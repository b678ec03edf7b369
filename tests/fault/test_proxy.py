"""The fault proxy and the fault fixtures, against real redis-server, PostgreSQL, SecantusDB."""

from __future__ import annotations

import socket
import time
import uuid

import psycopg
import pytest
import redis
import redis.asyncio
from pymongo import MongoClient
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fault._proxy import FaultProxy
from tests.fault.conftest import FaultMongo, FaultPostgres, FaultRedis


def client(url: str, timeout: float = 2.0) -> redis.Redis:
    """A redis-py client that fails at once: no retries of its own hide a fault."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def test_url_for_keeps_user_database_and_query() -> None:
    proxy = FaultProxy("127.0.0.1", 1)
    proxy.port = 4242
    assert (
        proxy.url_for("redis://:pw@10.0.0.1:6379/3?ttl=60") == "redis://:pw@127.0.0.1:4242/3?ttl=60"
    )
    assert (
        proxy.url_for("postgresql://u:p@db.example:5432/app?schema=s")
        == "postgresql://u:p@127.0.0.1:4242/app?schema=s"
    )
    assert (
        proxy.url_for("mongodb://h:27017/db?directConnection=true")
        == "mongodb://127.0.0.1:4242/db?directConnection=true"
    )
    with pytest.raises(ValueError, match="unknown proxy mode"), proxy.fault("slow"):
        pass
    with pytest.raises(ValueError, match=">= 0"):
        proxy.set_latency(-1)


def test_pass_forwards_and_counts_connections(fault_redis: FaultRedis) -> None:
    proxy = fault_redis.proxy
    r = client(fault_redis.url)
    try:
        assert r.set("k", b"v") is True
        assert r.get("k") == b"v"
        assert (proxy.connections, proxy.total) == (1, 1)
    finally:
        r.close()
    deadline = time.monotonic() + 2
    while proxy.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (proxy.connections, proxy.total) == (0, 1)
    assert client(fault_redis.direct_url).get("k") == b"v"  # it reached the real server


def test_latency_delays_both_directions_and_keeps_order(fault_redis: FaultRedis) -> None:
    r = client(fault_redis.url)
    try:
        r.ping()
        with fault_redis.proxy.fault("latency", seconds=0.2):
            start = time.monotonic()
            r.ping()
            elapsed = time.monotonic() - start
            pipe = r.pipeline(transaction=False)
            for i in range(200):
                pipe.set(f"n{i}", i)
                pipe.get(f"n{i}")
            replies = pipe.execute()
        start = time.monotonic()
        r.ping()
        after = time.monotonic() - start
    finally:
        r.close()
    assert elapsed >= 0.4  # 0.2 s each way
    assert replies[1::2] == [str(i).encode() for i in range(200)]
    assert after < 0.2  # back to pass


def test_blackhole_times_a_client_out_then_heals(fault_redis: FaultRedis) -> None:
    r = client(fault_redis.url, timeout=0.5)
    try:
        r.ping()
        with fault_redis.proxy.fault("blackhole"):
            start = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                r.get("k")
            waited = time.monotonic() - start
            with pytest.raises(redis.TimeoutError):  # a new connection hangs too
                client(fault_redis.url, timeout=0.5).ping()
        assert r.ping() is True  # redis-py reconnects after its timeout
    finally:
        r.close()
    assert 0.45 <= waited < 1.5


async def test_blackhole_stalls_an_async_client_while_the_loop_is_blocked(
    fault_redis: FaultRedis,
) -> None:
    """The proxy has its own loop: a sync call blocking this loop still gets through."""
    r = redis.asyncio.Redis.from_url(
        fault_redis.url, socket_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0)
    )
    try:
        await r.set("a", b"1")
        assert client(fault_redis.url).get("a") == b"1"  # blocks this loop; the proxy serves it
        fault_redis.proxy.set_blackhole()
        with pytest.raises(redis.TimeoutError):
            await r.get("a")
    finally:
        fault_redis.proxy.set_pass()
        await r.aclose()


def test_reset_breaks_open_and_new_connections_until_pass(fault_redis: FaultRedis) -> None:
    proxy = fault_redis.proxy
    r = client(fault_redis.url)
    try:
        r.ping()
        proxy.set_reset()
        with pytest.raises(redis.ConnectionError):
            r.ping()
        with pytest.raises(redis.ConnectionError):
            client(fault_redis.url).ping()
        proxy.set_pass()
        assert r.ping() is True
    finally:
        r.close()
    assert proxy.total >= 3


def connect_and_read(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        time.sleep(0.1)  # the proxy has accepted and handled it by now
        return s.recv(16)  # b"" after a FIN


def test_reset_sends_rst_not_fin(fault_redis: FaultRedis) -> None:
    fault_redis.proxy.set_reset()
    with pytest.raises(ConnectionResetError):  # at connect or at recv: an RST either way
        connect_and_read(fault_redis.proxy.port)


def test_refuse_stops_listening_and_pass_listens_again(fault_redis: FaultRedis) -> None:
    proxy = fault_redis.proxy
    port = proxy.port
    proxy.set_refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    proxy.set_pass()
    assert proxy.port == port
    assert client(fault_redis.url).ping() is True


def test_redis_server_killed_and_restarted_behind_the_proxy(fault_redis: FaultRedis) -> None:
    r = client(fault_redis.url)
    try:
        r.set("k", b"v")
        fault_redis.server.stop()
        with pytest.raises(redis.ConnectionError):
            r.get("k")
        fault_redis.server.start()
        assert r.get("k") is None  # no persistence: the restarted server is empty
    finally:
        r.close()


def test_postgres_pass_and_reset(fault_postgres: FaultPostgres) -> None:
    with psycopg.connect(fault_postgres.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (fault_postgres.database,)
        fault_postgres.proxy.set_reset()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(fault_postgres.dsn, connect_timeout=2).close()
    fault_postgres.proxy.set_pass()
    with psycopg.connect(fault_postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_latency(fault_postgres: FaultPostgres) -> None:
    with (
        psycopg.connect(fault_postgres.dsn, autocommit=True) as conn,
        fault_postgres.proxy.fault("latency", seconds=0.15),
    ):
        start = time.monotonic()
        conn.execute("SELECT 1")
        elapsed = time.monotonic() - start
    assert elapsed >= 0.3


def test_postgres_terminate_backends(fault_postgres: FaultPostgres) -> None:
    with psycopg.connect(fault_postgres.dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        assert fault_postgres.terminate_backends() >= 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with psycopg.connect(fault_postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_mongo_through_the_proxy_keeps_data_across_a_kill(fault_mongo: FaultMongo) -> None:
    db = f"fault_{uuid.uuid4().hex[:8]}"
    url = fault_mongo.url(db)
    c: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=3000)
    try:
        c[db]["t"].insert_one({"_id": 1, "v": b"x"})
        assert fault_mongo.proxy.total >= 1  # the driver talks through the proxy
        fault_mongo.server.stop()  # SIGKILL
        fault_mongo.server.start()
        assert c[db]["t"].find_one({"_id": 1}) == {"_id": 1, "v": b"x"}
        with fault_mongo.proxy.fault("reset"):
            pass
        assert c[db]["t"].count_documents({}) == 1
    finally:
        c.close()
