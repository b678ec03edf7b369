"""Parse and validate a ``redis[s]://`` or ``redis[s]+sentinel://`` URL (see the package doc)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ... import errors
from . import _sentinel

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
    *_sentinel.SENTINEL_OPTS,
)
# Attempts of a command that may be repeated, through a Sentinel failover: the retry layer
# stops earlier, at 80% of op_timeout, so a failover shorter than that is not seen by callers.
SENTINEL_RETRIES = 100
Wrap = Callable[[type[AbstractConnection]], type[AbstractConnection]]


class RedisOptions:
    """Connection and layout settings parsed from a Redis URL (see the package doc).

    Attributes:
        mode: ``standalone``, ``sentinel`` or ``cluster``.
        sentinels: The sentinels' ``(host, port)`` (sentinel mode).
        service: The Sentinel service name (sentinel mode, else ``""``).
        replica_acks: Replicas each write-behind step and lease change waits for (cache only).
    """

    __slots__ = (
        "client_kwargs",
        "cluster",
        "host",
        "max_connections",
        "mode",
        "op_timeout",
        "port",
        "prefix",
        "replica_acks",
        "retries",
        "secrets",
        "sentinel_kwargs",
        "sentinels",
        "service",
        "ttl",
    )

    def __init__(self, url: str, *, role: str, op_timeout: float) -> None:
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in ("redis", "rediss", *_sentinel.SCHEMES):
            raise errors.ConfigError(
                f"{role}: not a redis://, rediss:// or redis[s]+sentinel:// URL"
            )
        sentinel = scheme.lower() in _sentinel.SCHEMES
        parts = urlsplit(url)
        opt = _query(role, parts.query)
        tls = scheme.lower().startswith("rediss")
        if sentinel:
            user, password, self.sentinels = _sentinel.split_netloc(role, parts.netloc)
            self.service, db = _sentinel.split_path(role, parts.path)
            host, port = self.sentinels[0]
            if "cluster" in opt:
                raise errors.ConfigError(
                    f"{role}: cluster is not an option of a redis+sentinel URL "
                    "(a Sentinel service is one master and its replicas)"
                )
        else:
            self.sentinels, self.service = [], ""
            user, password, host, port, db = _plain(role, parts, opt)
        self.cluster = _bool(role, opt, "cluster", default=False)
        self.mode = "sentinel" if sentinel else "cluster" if self.cluster else "standalone"
        if self.cluster and db != 0:
            raise errors.ConfigError(f"{role}: Redis Cluster has only database 0")
        if role == "durable" and "ttl" in opt:
            raise errors.ConfigError("durable: ttl is a cache option; durable data never expires")
        if not tls and any(k in opt for k in _SSL_OPTS):
            raise errors.ConfigError(f"{role}: ssl_* options need a rediss:// URL")
        self.host = host
        self.port = port
        self.max_connections = _num(role, opt, "max_connections", int, 32, hi=10_000)
        self.retries = _num(
            role,
            opt,
            "retries",
            int,
            SENTINEL_RETRIES if sentinel else 3,
            hi=SENTINEL_RETRIES if sentinel else 10,
        )
        self.ttl = _num(role, opt, "ttl", int, 86_400, hi=10 * 365 * 86_400)
        prefix = opt.get("prefix", "bs")
        if not (prefix.replace("_", "").replace("-", "").isalnum() and len(prefix) <= 32):
            raise errors.ConfigError(f"{role}: prefix must be 1-32 letters, digits, '-' or '_'")
        self.prefix = prefix + ("c" if role == "cache" else "")
        self.op_timeout = op_timeout
        self.replica_acks = 0  # cache only: set by from_config (StoreConfig.cache_replica_acks)
        kw: dict[str, Any] = {
            "username": user,
            "password": password,
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
        ssl = _ssl_kwargs(role, opt) if tls else {}
        kw |= ssl
        if self.cluster:
            kw["ssl"] = tls
        elif sentinel:
            kw |= {"db": db, "connection_class": _sentinel.connection_class(tls)}
        else:
            kw |= {"db": db, "connection_class": SSLConnection if tls else Connection}
        self.client_kwargs = kw
        self.sentinel_kwargs: dict[str, Any] = {
            "username": opt.get("sentinel_username") or None,
            "password": opt.get("sentinel_password") or None,
            "socket_connect_timeout": kw["socket_connect_timeout"],
            # A sentinel that stops answering must not hold master discovery (and so every new
            # connection) forever: the next sentinel is asked instead.
            "socket_timeout": kw["socket_timeout"] or kw["socket_connect_timeout"],
            "retry": Retry(NoBackoff(), 0),
        }
        if tls:
            self.sentinel_kwargs |= {"connection_class": SSLConnection, **ssl}
        # Kept out of every message and log line (see ScriptRunner._error).
        self.secrets = tuple(s for s in (password, self.sentinel_kwargs["password"]) if s)

    @property
    def password(self) -> str | None:
        """The password from the URL (kept out of every message)."""
        value: str | None = self.client_kwargs.get("password")
        return value

    def connect(self, wrap: Wrap | None = None) -> tuple[Redis | RedisCluster, Sentinel | None]:
        """A client for these options and, in sentinel mode, its Sentinel manager.

        Connections open lazily. ``wrap`` replaces the connection class (standalone and
        sentinel modes): the runner's era probe runs on every new connection (see ``_era``).
        """
        kw = dict(self.client_kwargs)
        if self.cluster:
            nodes = RedisCluster(self.host, self.port, max_connections=self.max_connections, **kw)
            return nodes, None
        if wrap is not None:
            kw["connection_class"] = wrap(kw["connection_class"])
        if self.mode == "sentinel":
            sentinel, master = _sentinel.connect(
                self.sentinels,
                self.service,
                sentinel_kwargs=self.sentinel_kwargs,
                client_kwargs=kw,
                max_connections=self.max_connections,
                timeout=self.op_timeout,
            )
            return master, sentinel
        pool = BlockingConnectionPool(
            host=self.host,
            port=self.port,
            max_connections=self.max_connections,
            timeout=self.op_timeout,  # waiting for a free connection
            **kw,
        )
        return Redis.from_pool(pool), None


def _plain(
    role: str, parts: SplitResult, opt: dict[str, str]
) -> tuple[str | None, str | None, str, int, int]:
    """``(user, password, host, port, db)`` of a ``redis[s]://`` URL."""
    if any(k in opt for k in _sentinel.SENTINEL_OPTS):
        raise errors.ConfigError(f"{role}: sentinel_* options need a redis+sentinel URL")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    try:
        port = parts.port or 6379
    except ValueError:
        raise errors.ConfigError(f"{role}: invalid port in redis URL") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise errors.ConfigError(f"{role}: redis URL path must be a database number")
    return user, password, parts.hostname or "localhost", port, int(path or 0)


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
