"""``redis+sentinel://`` URL parsing (RedisOptions): hosts, service, db, options, typed errors."""

from __future__ import annotations

import pytest
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from baileys_store import StoreConfig, errors
from baileys_store.backends.redis import RedisOptions, from_config


def opts(url: str, role: str = "cache") -> RedisOptions:
    return RedisOptions(url, role=role, op_timeout=3.0)


def test_hosts_service_db_and_defaults() -> None:
    o = opts("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/2")
    assert o.mode == "sentinel"
    assert not o.cluster
    assert o.sentinels == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert o.service == "mymaster"
    assert o.client_kwargs["db"] == 2
    assert o.client_kwargs["connection_class"] is SentinelManagedConnection
    assert o.client_kwargs["retry"].get_retries() == 0  # ours is the only retry layer
    assert o.client_kwargs["socket_timeout"] is None  # the runner bounds every call
    assert o.prefix == "bsc"
    assert o.retries > 3  # retried through a failover, bounded by op_timeout


def test_db_defaults_to_zero_and_service_is_unquoted() -> None:
    o = opts("redis+sentinel://h:1/my%20svc")
    assert o.service == "my svc"
    assert o.client_kwargs["db"] == 0


def test_credentials_for_master_and_sentinels() -> None:
    o = opts(
        "redis+sentinel://app:p%40ss@h:1/svc?sentinel_password=sp&sentinel_username=su"
        "&prefix=x&ttl=60&max_connections=7&client_name=me&socket_connect_timeout=2"
    )
    assert (o.client_kwargs["username"], o.client_kwargs["password"]) == ("app", "p@ss")
    assert (o.sentinel_kwargs["username"], o.sentinel_kwargs["password"]) == ("su", "sp")
    assert set(o.secrets) == {"p@ss", "sp"}
    assert (o.prefix, o.ttl, o.max_connections) == ("xc", 60, 7)
    assert o.client_kwargs["client_name"] == "me"
    assert o.client_kwargs["socket_connect_timeout"] == 2.0


def test_password_only() -> None:
    o = opts("redis+sentinel://:secret@h:1/svc")
    assert o.client_kwargs["username"] is None
    assert o.client_kwargs["password"] == "secret"


def test_tls_scheme() -> None:
    o = opts("rediss+sentinel://h:1/svc?ssl_cert_reqs=none")
    assert o.client_kwargs["connection_class"] is SentinelManagedSSLConnection
    assert o.client_kwargs["ssl_cert_reqs"] == "none"
    assert o.sentinel_kwargs["ssl_cert_reqs"] == "none"  # TLS to the sentinels too


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel:///svc", "no sentinel host"),
        ("redis+sentinel://,/svc", "no sentinel host"),
        ("redis+sentinel://h:1", "no service"),
        ("redis+sentinel://h:1/", "no service"),
        ("redis+sentinel://h:x/svc", "port"),
        ("redis+sentinel://h:70000/svc", "port"),
        ("redis+sentinel://h:1,:2/svc", "no host"),
        ("redis+sentinel://h:1/svc/x", "database"),
        ("redis+sentinel://h:1/svc/0/extra", "/service_name[/db]"),
        ("redis+sentinel://h:1/svc?cluster=true", "cluster"),
        ("redis+sentinel://h:1/svc?bogus=1", "unknown redis URL option"),
        ("redis+sentinel://h:1/svc?ssl_cert_reqs=none", "rediss"),
        ("redis://h:1/0?sentinel_password=x", "redis+sentinel"),
        ("redis+cluster://h:1/svc", "not a redis"),
    ],
)
def test_bad_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        opts(url)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://u:topsecret@h:x/svc",
        "redis+sentinel://u:topsecret@h:1/svc?bogus=1",
        "redis+sentinel://u:topsecret@h:1/svc?sentinel_password=topsecret&cluster=1",
        "redis+sentinel://u:topsecret@/svc",
    ],
)
def test_passwords_are_never_echoed(url: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        opts(url)
    assert "topsecret" not in str(info.value)


def test_durable_role_and_from_config() -> None:
    with pytest.raises(errors.ConfigError, match="ttl"):
        opts("redis+sentinel://h:1/svc?ttl=5", role="durable")
    config = StoreConfig(
        durable="redis+sentinel://h:1/svc?prefix=d",
        cache="rediss+sentinel://h:1,h2:2/svc/1",
        cache_replica_acks=1,
    )
    durable = from_config(config, "durable")
    cache = from_config(config, "cache")
    assert durable.options.mode == cache.options.mode == "sentinel"
    assert durable.options.prefix == "d"
    assert cache.options.prefix == "bsc"
    assert cache.options.replica_acks == 1
    assert durable.options.replica_acks == 0


def test_plain_urls_keep_their_modes() -> None:
    assert opts("redis://h:1/0").mode == "standalone"
    assert opts("redis://h:1/0?cluster=true").mode == "cluster"
    assert opts("redis://h:1/0").retries == 3
