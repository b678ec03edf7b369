"""Redis backend on real servers: Lua atomicity, slots, TTLs, paging, URLs, TLS, outages.

The durable contract itself (fencing, CAS, batches, listings) runs on the Redis-only tier,
standalone and Cluster, in ``tests/contract/test_durable_*.py``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
from redis.crc import key_slot

from baileys_store import StoreConfig, errors
from baileys_store._model import CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends import redis as rb
from baileys_store.backends.redis import _index as redis_index
from tests._services.redis import (
    RedisClusterServers,
    RedisServer,
    free_port,
    start_redis,
    unique_prefix,
    with_query,
)
from tests.integration._backend_cases import opened

ADDR = SessionAddr("clinic-1/channel:2", "5511@s.whatsapp.net")


def durable(url: str, prefix: str, **cfg: object) -> rb.RedisDurable:
    backend = rb.from_config(
        StoreConfig(durable=with_query(url, prefix=prefix), cache=None, **cfg), "durable"
    )
    assert isinstance(backend, rb.RedisDurable)
    return backend


def cache(url: str, prefix: str, ttl: int = 600) -> rb.RedisCache:
    cfg = StoreConfig(durable="memory://", cache=with_query(url, prefix=prefix, ttl=str(ttl)))
    backend = rb.from_config(cfg, "cache")
    assert isinstance(backend, rb.RedisCache)
    return backend


@contextlib.contextmanager
def redis_on(tmp_path: Path, *args: str) -> Iterator[RedisServer]:
    """A private redis-server started with ``args``, stopped after the block."""
    server = start_redis(tmp_path, *args)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["standalone", "cluster"])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "standalone":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return cluster.url


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def store(server_url: str, prefix: str) -> AsyncIterator[rb.RedisDurable]:
    async with opened(durable(server_url, prefix)) as backend:
        yield backend


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _all_keys(backend: rb.RedisDurable | rb.RedisCache, pattern: str) -> list[bytes]:
    client = backend.runner.client
    if isinstance(client, aredis.RedisCluster):
        found: list[bytes] = []
        for node in client.get_primaries():
            found += [k async for k in client.scan_iter(match=pattern, target_nodes=node)]
        return found
    return [k async for k in client.scan_iter(match=pattern)]


# -- compare-and-set ---------------------------------------------------------------------------


async def test_retried_save_that_was_applied_reports_success(store: rb.RedisDurable) -> None:
    """A retry after a lost reply finds its own blob one version up: same answer, no conflict."""
    assert await store.save_creds(ADDR, b"first", expected_version=0) == 1
    assert await store.save_creds(ADDR, b"first", expected_version=0) == 1
    with pytest.raises(errors.ConflictError):
        await store.save_creds(ADDR, b"other", expected_version=0)
    assert await store.load_creds(ADDR) == CredsRecord(b"first", 1)


# -- atomicity of the Lua scripts -------------------------------------------------------------


async def test_multi_type_write_failing_midway_leaves_nothing(
    store: rb.RedisDurable, prefix: str
) -> None:
    await store.write_keys(ADDR, [KeyWrite("pre-key", "1", b"old")], fence=2)
    base = store.runner.base(ADDR)
    client = store.runner.client
    await client.set(base + "k:session", b"foreign string")  # the 3rd of 4 types will fail
    writes = [
        KeyWrite("pre-key", "1", b"new"),
        KeyWrite("pre-key", "2", b"new"),
        KeyWrite("sender-key", "g", b"new"),
        KeyWrite("session", "a", b"new"),
        KeyWrite("app-state-sync-key", "k", b"new"),
    ]
    with pytest.raises(errors.CorruptDataError):
        await store.write_keys(ADDR, writes, fence=3)
    assert await store.get_keys(ADDR, "pre-key", ["1", "2"]) == {"1": b"old"}
    assert await store.get_keys(ADDR, "sender-key", ["g"]) == {}
    assert set(await client.smembers(base + "t")) == {b"pre-key"}
    with pytest.raises(errors.FencedError):  # the fence of the failed write was not recorded
        await store.write_keys(ADDR, [KeyWrite("pre-key", "1", b"x")], fence=1)
    assert await client.hget(base + "m", "f") == b"2"
    # clear checks every type before removing anything.
    await client.sadd(base + "t", "session")
    with pytest.raises(errors.CorruptDataError):
        await store.clear_keys(ADDR)
    assert await store.get_keys(ADDR, "pre-key", ["1"]) == {"1": b"old"}
    await client.delete(base + "k:session")
    assert await store.clear_keys(ADDR) == 1


async def test_cache_put_failing_midway_leaves_nothing(redis_server: RedisServer) -> None:
    async with opened(cache(redis_server.url, unique_prefix())) as c:
        await c.runner.client.set(c.runner.base(ADDR) + "k:session", b"foreign")
        writes = [KeyWrite("pre-key", "1", b"x"), KeyWrite("session", "a", b"y")]
        with pytest.raises(errors.CorruptDataError):
            await c.update_keys(ADDR, writes, token=None)
        assert (await c.read_keys(ADDR, "pre-key", ["1"])).found == {}


# -- key layout ----------------------------------------------------------------------------------


async def test_every_key_of_a_session_maps_to_one_slot(store: rb.RedisDurable, prefix: str) -> None:
    writes = [KeyWrite(t, "id{with}braces:and:colons", b"v") for t in ("pre-key", "session", "a.b")]
    await store.write_keys(ADDR, writes)
    await store.save_creds(ADDR, b"c")
    keys = await _all_keys(store, f"{prefix}:{{*")
    assert len(keys) == 5  # meta, types, three type hashes
    assert len({key_slot(k) for k in keys}) == 1
    tag = f"{prefix}:{{{ADDR.namespace}|{ADDR.session_id}}}:".encode()
    assert all(k.startswith(tag) for k in keys)


async def test_durable_keys_never_expire_and_cache_keys_do(server_url: str, prefix: str) -> None:
    d, c = durable(server_url, prefix), cache(server_url, prefix, ttl=120)
    async with opened(d), opened(c):
        writes = [KeyWrite("pre-key", "1", b"x"), KeyWrite("session", "a", b"y")]
        await d.write_keys(ADDR, writes)
        await d.save_creds(ADDR, b"creds")
        await c.update_keys(ADDR, writes, token=None)
        await c.put_creds_guarded(ADDR, CredsRecord(b"creds", 1), token=None)
        dkeys = await _all_keys(d, f"{prefix}:*")
        ckeys = await _all_keys(c, f"{prefix}c:*")
        # meta, types, 2 hashes, session index, schema version, role marker, store metadata
        assert len(dkeys) == 8
        assert len(ckeys) == 5  # meta, types, 2 hashes, the write stamp
        for k in dkeys:
            assert await d.runner.client.pttl(k) == -1, k
        for k in ckeys:
            # The write stamp ("b") has no TTL, as before the caches merged (it guards fills).
            expected = (-1, -1) if k.endswith(b":b") else (1, 120_000)
            ttl = await c.runner.client.pttl(k)
            assert expected[0] <= ttl <= expected[1], k
        # update_keys with None evicts; drop evicts everything.
        await c.update_keys(ADDR, [KeyWrite("pre-key", "1", None)], token=None)
        assert (await c.read_keys(ADDR, "pre-key", ["1"])).found == {}
        assert (await c.read_keys(ADDR, "session", ["a"])).found == {"a": b"y"}
        assert (await c.read_creds(ADDR)).record == CredsRecord(b"creds", 1)
        await c.drop(ADDR, token=None)
        # Only the write stamp stays: it moves on, so a fill read before the drop is refused.
        assert await _all_keys(c, f"{prefix}c:*") == [c.runner.base(ADDR).encode() + b"b"]
        assert await d.get_keys(ADDR, "session", ["a"]) == {"a": b"y"}


async def test_schema_version_recorded_once_and_newer_refused(
    redis_server: RedisServer, raw: aredis.Redis
) -> None:
    prefix = unique_prefix()
    for _ in range(2):
        async with opened(durable(redis_server.url, prefix)):
            pass
    assert await raw.get(f"{prefix}:schema") == b"1"
    await raw.set(f"{prefix}:schema", 99)
    with pytest.raises(errors.UnavailableError, match="newer"):
        await durable(redis_server.url, prefix).open()


# -- list_sessions -------------------------------------------------------------------------------


async def test_list_sessions_pages_and_skips_dead_entries(
    store: rb.RedisDurable, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_index, "_PAGE", 3)  # the byte order itself: the contract suite
    names = [("a", "1"), ("a", "2"), ("a-b", "1"), ("a.b", "x"), ("a/b", "y"), ("ab", "z")]
    names.append(("b", "0"))
    for ns, sid in reversed(names):
        await store.write_keys(SessionAddr(ns, sid), [KeyWrite("session", "1", b"v")])
    assert [(s.namespace, s.session_id) async for s in store.list_sessions()] == sorted(names)
    assert [s.session_id async for s in store.list_sessions("a")] == ["1", "2"]
    # An index entry whose session is gone (a crash between two steps) is skipped.
    await store.runner.client.zadd(f"{prefix}:sessions", {"a\0ghost": 0})
    assert [s.session_id async for s in store.list_sessions("a")] == ["1", "2"]
    assert await store.delete_session(SessionAddr("a", "1")) is True
    assert [s.session_id async for s in store.list_sessions("a")] == ["2"]


# -- URL options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://h/0?bogus=1", "unknown redis URL option 'bogus'"),
        ("redis://h/0?max_connections=0", "max_connections"),
        ("redis://h/0?max_connections=x", "max_connections must be a number"),
        ("redis://h/0?socket_timeout=-1", "socket_timeout"),
        ("redis://h/0?cluster=maybe", "cluster must be true or false"),
        ("redis://h/3?cluster=true", "only database 0"),
        ("redis://h/abc", "database number"),
        ("redis://h:notaport/0", "invalid port"),
        ("redis://h/0?ssl_ca_certs=/x", "rediss://"),
        ("rediss://h/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs"),
        ("redis://h/0?prefix=a{b}", "prefix"),
        ("redis://h/0?prefix=", "prefix"),
        ("redis://h/0?retries=1&retries=2", "given twice"),
        ("redis://h/0?ttl=60", "ttl is a cache option"),
    ],
)
def test_bad_durable_urls(url: str, match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match):
        rb.from_config(StoreConfig(durable=url, cache=None), "durable")


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "x"])
def test_cache_ttl_validated(bad: str) -> None:
    with pytest.raises(errors.ConfigError, match="ttl"):
        rb.from_config(StoreConfig(cache=f"redis://h/0?ttl={bad}"), "cache")


def test_url_options_parsed() -> None:
    url = (
        "rediss://u%40x:p%2Fw@cache.example:6390/2?max_connections=7&socket_timeout=1.5"
        "&socket_connect_timeout=0.5&retries=2&prefix=app_1&ttl=30&client_name=bot"
        "&ssl_cert_reqs=none"
    )
    c = rb.from_config(StoreConfig(cache=url, op_timeout=4), "cache")
    o = c.options
    assert (o.host, o.port, o.max_connections, o.retries) == ("cache.example", 6390, 7, 2)
    assert (o.ttl, o.prefix, o.cluster) == (30, "app_1c", False)
    kw = o.client_kwargs
    assert (kw["username"], kw["password"], kw["db"]) == ("u@x", "p/w", 2)
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (1.5, 0.5)
    assert (kw["ssl_cert_reqs"], kw["ssl_check_hostname"]) == ("none", False)
    assert kw["client_name"] == "bot"
    d = rb.from_config(StoreConfig(durable="redis://h?cluster=true", op_timeout=4), "durable")
    assert d.options.cluster
    assert d.options.prefix == "bs"
    # No socket timeout by default: every call runs under the runner's op_timeout deadline.
    assert d.options.client_kwargs["socket_timeout"] is None
    assert d.options.client_kwargs["socket_connect_timeout"] == 4
    assert d.options.op_timeout == 4
    assert d.options.ttl == 86_400  # unused by the durable tier


async def test_wrong_password_is_unavailable_and_not_echoed(
    redis_server: RedisServer, raw: aredis.Redis
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    await raw.acl_setuser(
        user, enabled=True, passwords=["+right-pw-123"], keys=["*"], commands=["+@all"]
    )
    try:
        secret = "Wr0ng-Pa55-w0rd"
        url = redis_server.url.replace("redis://", f"redis://{user}:{secret}@")
        b = durable(url, unique_prefix())
        with pytest.raises(errors.UnavailableError) as info:
            await b.open()
        assert secret not in str(info.value)
        assert "authentication" in str(info.value)
        async with opened(durable(url.replace(secret, "right-pw-123"), unique_prefix())):
            pass
    finally:
        await raw.acl_deluser(user)


# -- outages -------------------------------------------------------------------------------------


async def test_nothing_listening_is_unavailable() -> None:
    b = durable(f"redis://127.0.0.1:{free_port()}/0", "x", op_timeout=2)
    with pytest.raises(errors.UnavailableError):
        await b.open()


async def test_server_killed_then_restarted(tmp_path: Path) -> None:
    with redis_on(tmp_path) as server:
        b, c = durable(server.url, "out", op_timeout=2), cache(server.url, "out")
        async with opened(b), opened(c):
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"v")])
            await b.save_creds(ADDR, b"c")
            server.stop()
            with pytest.raises(errors.UnavailableError):
                await b.get_keys(ADDR, "session", ["1"])
            with pytest.raises(errors.UnavailableError):
                await b.load_creds(ADDR)
            with pytest.raises(errors.UnavailableError):
                await b.write_keys(ADDR, [KeyWrite("session", "1", b"w")])
            with pytest.raises(errors.UnavailableError):
                _ = [s async for s in b.list_sessions()]
            with pytest.raises(errors.UnavailableError):
                await c.read_creds(ADDR)
            health = await b.check()
            assert not health.ok
            server.start()  # empty again (no persistence): the client reconnects by itself
            assert (await b.check()).ok
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"w")])
            assert await b.get_keys(ADDR, "session", ["1"]) == {"1": b"w"}


async def test_killed_connection_is_retried(server_url: str, prefix: str) -> None:
    """The server drops our pooled connections (CLIENT KILL): the next call reconnects."""
    name = f"bs-{uuid.uuid4().hex[:8]}"
    async with opened(durable(with_query(server_url, client_name=name), prefix)) as b:
        await b.write_keys(ADDR, [KeyWrite("session", "1", b"v")])
        client = b.runner.client
        killed = 0
        if isinstance(client, aredis.RedisCluster):
            for node in client.get_primaries():
                for c in await client.client_list(target_nodes=node):
                    if c["name"] == name:
                        killed += await client.client_kill_filter(_id=c["id"], target_nodes=node)
        else:
            admin = aredis.Redis.from_url(server_url.split("?", maxsplit=1)[0])
            for c in await admin.client_list():
                if c["name"] == name:
                    killed += await admin.client_kill_filter(_id=c["id"])
            await admin.aclose()
        assert killed >= 1
        assert await b.get_keys(ADDR, "session", ["1"]) == {"1": b"v"}
        await b.write_keys(ADDR, [KeyWrite("session", "1", b"w")])


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (its own CA) and its key."""
    import datetime  # noqa: PLC0415 - only this test needs it
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_rediss_with_certificate_checks(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    with redis_on(
        tmp_path,
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    ):
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        async with opened(durable(url, "tls")) as b:
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"v")])
            assert await b.get_keys(ADDR, "session", ["1"]) == {"1": b"v"}
        untrusted = durable(f"rediss://127.0.0.1:{tls_port}/0", "tls", op_timeout=2)
        with pytest.raises(errors.UnavailableError):
            await untrusted.open()
        plain = durable(f"redis://127.0.0.1:{tls_port}/0", "tls", op_timeout=1)
        with pytest.raises(errors.UnavailableError):
            await plain.open()


async def test_out_of_memory_write_leaves_nothing(tmp_path: Path) -> None:
    with redis_on(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction") as server:
        async with opened(durable(server.url, "oom")) as b:
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"old")], fence=1)
            big = b"x" * 200_000
            with pytest.raises(errors.UnavailableError, match="OutOfMemoryError"):  # noqa: PT012
                for n in range(100):
                    await b.write_keys(SessionAddr("fill", "s"), [KeyWrite("pre-key", str(n), big)])
            writes = [KeyWrite("session", "1", b"new"), KeyWrite("sender-key", "g", big)]
            with pytest.raises(errors.UnavailableError):
                await b.write_keys(ADDR, writes, fence=7)
            assert await b.get_keys(ADDR, "session", ["1"]) == {"1": b"old"}
            assert await b.get_keys(ADDR, "sender-key", ["g"]) == {}
            assert await b.delete_session(SessionAddr("fill", "s")) is True  # frees the memory
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"ok")], fence=1)  # fence still 1
            assert await b.get_keys(ADDR, "session", ["1"]) == {"1": b"ok"}
