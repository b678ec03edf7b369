"""Parse and validate a ``redis://`` / ``rediss://`` URL (options: see the package doc)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ... import errors

T = TypeVar("T")

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_SSL_OPTS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_OPTS = (
    "cluster",
    "max_connections",
    "socket_timeout",
    "socket_connect_timeout",
    "retries",
    "prefix",
    "ttl",
    "client_name",
    *_SSL_OPTS,
)


class RedisOptions:
    """Connection and layout settings parsed from a ``redis://`` URL (see the module doc)."""

    __slots__ = (
        "client_kwargs",
        "cluster",
        "host",
        "max_connections",
        "op_timeout",
        "port",
        "prefix",
        "replica_acks",
        "retries",
        "ttl",
    )

    def __init__(self, url: str, *, role: str, op_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise errors.ConfigError(f"{role}: not a redis:// or rediss:// URL")
        opt = _query(role, parts.query)
        tls = parts.scheme == "rediss"
        try:
            port = parts.port or 6379
        except ValueError:
            raise errors.ConfigError(f"{role}: invalid port in redis URL") from None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise errors.ConfigError(f"{role}: redis URL path must be a database number")
        db = int(path or 0)
        self.cluster = _bool(role, opt, "cluster", default=False)
        if self.cluster and db != 0:
            raise errors.ConfigError(f"{role}: Redis Cluster has only database 0")
        if role == "durable" and "ttl" in opt:
            raise errors.ConfigError("durable: ttl is a cache option; durable data never expires")
        if not tls and any(k in opt for k in _SSL_OPTS):
            raise errors.ConfigError(f"{role}: ssl_* options need a rediss:// URL")
        self.host = parts.hostname or "localhost"
        self.port = port
        self.max_connections = _num(role, opt, "max_connections", int, 32, hi=10_000)
        self.retries = _num(role, opt, "retries", int, 3, hi=10)
        self.ttl = _num(role, opt, "ttl", int, 86_400, hi=10 * 365 * 86_400)
        prefix = opt.get("prefix", "bs")
        if not (prefix.replace("_", "").replace("-", "").isalnum() and len(prefix) <= 32):
            raise errors.ConfigError(f"{role}: prefix must be 1-32 letters, digits, '-' or '_'")
        self.prefix = prefix + ("c" if role == "cache" else "")
        self.op_timeout = op_timeout
        self.replica_acks = 0  # cache only: set by from_config (StoreConfig.cache_replica_acks)
        kw: dict[str, Any] = {
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            # None by default: every call already runs under a deadline (the runner's and the
            # store's), and redis-py puts a socket timeout's sends in a task of their own.
            "socket_timeout": (
                _num(role, opt, "socket_timeout", float, op_timeout, lo=0.001)
                if "socket_timeout" in opt
                else None
            ),
            "socket_connect_timeout": _num(
                role, opt, "socket_connect_timeout", float, op_timeout, lo=0.001
            ),
            "client_name": opt.get("client_name") or None,
            "retry": Retry(NoBackoff(), 0),  # ours is the only retry layer
        }
        if tls:
            kw |= _ssl_kwargs(role, opt)
        if self.cluster:
            kw["ssl"] = tls
        else:
            kw |= {"db": db, "connection_class": SSLConnection if tls else Connection}
        self.client_kwargs = kw

    @property
    def password(self) -> str | None:
        """The password from the URL (kept out of every message)."""
        value: str | None = self.client_kwargs.get("password")
        return value

    def connect(self) -> Redis | RedisCluster:
        """A client for these options; connections open lazily."""
        kw = dict(self.client_kwargs)
        if self.cluster:
            return RedisCluster(self.host, self.port, max_connections=self.max_connections, **kw)
        pool = BlockingConnectionPool(
            host=self.host,
            port=self.port,
            max_connections=self.max_connections,
            timeout=self.op_timeout,  # waiting for a free connection
            **kw,
        )
        return Redis.from_pool(pool)


def _bool(role: str, opt: dict[str, str], name: str, *, default: bool) -> bool:
    if name not in opt:
        return default
    value = _BOOLS.get(opt[name].lower())
    if value is None:
        raise errors.ConfigError(f"{role}: redis URL option {name} must be true or false")
    return value


def _query(role: str, query: str) -> dict[str, str]:
    parsed = parse_qs(query, keep_blank_values=True)
    for name, values in parsed.items():
        if name not in _OPTS:
            raise errors.ConfigError(f"{role}: unknown redis URL option {name!r}")
        if len(values) != 1:
            raise errors.ConfigError(f"{role}: redis URL option {name!r} given twice")
    return {k: v[0] for k, v in parsed.items()}


def _ssl_kwargs(role: str, opt: dict[str, str]) -> dict[str, Any]:
    reqs = opt.get("ssl_cert_reqs", "required")
    if reqs not in ("required", "optional", "none"):
        raise errors.ConfigError(f"{role}: ssl_cert_reqs must be required|optional|none")
    files = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    kw: dict[str, Any] = {k: opt[k] for k in files if k in opt}
    kw["ssl_cert_reqs"] = reqs
    kw["ssl_check_hostname"] = _bool(role, opt, "ssl_check_hostname", default=reqs != "none")
    return kw


def _num(
    role: str,
    opt: dict[str, str],
    name: str,
    kind: type[T],
    default: T,
    *,
    lo: float = 1,
    hi: float = 3600,
) -> T:
    if name not in opt:
        return default
    try:
        value = kind(opt[name])  # type: ignore[call-arg]
    except ValueError:
        raise errors.ConfigError(f"{role}: redis URL option {name} must be a number") from None
    if not lo <= value <= hi:  # type: ignore[operator]
        raise errors.ConfigError(f"{role}: redis URL option {name} must be in [{lo}, {hi}]")
    return value
