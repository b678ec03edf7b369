"""Parse and validate the ``nats://`` / ``tls://`` outbox URL (``StoreConfig.outbox``).

``nats://[user:password@]host:port[,host:port...][?options]``; ``tls://`` asks for TLS. Options:

- ``stream`` (``BAILEYS_OUTBOX``): the JetStream stream of outbox entries; the dead letters go to
  ``<stream>_DLQ``. Letters, digits, ``-`` and ``_`` only (a stream name is a subject token).
- ``prefix`` (``bs``): subjects are ``<prefix>.outbox.<namespace>.<session>`` and
  ``<prefix>.dlq.<namespace>.<session>``; one or more dot-separated tokens of the same
  characters, so two stores can share a server.
- ``replicas`` (1): the streams' replica count (1 to 5; a cluster of at least that many servers).
- ``ack_wait`` (5.0 seconds): how long a publish waits for the stream's acknowledgement
  (bounded by the store's ``op_timeout`` too).
- ``connect_timeout`` (2.0 seconds).

Errors are :class:`~baileys_store.errors.ConfigError` naming the option, never the URL: it may
carry a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from ... import errors

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,3}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_OPTS = ("stream", "prefix", "replicas", "ack_wait", "connect_timeout")


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """Settings parsed from the outbox URL (see the module doc)."""

    servers: tuple[str, ...]
    tls: bool = False
    stream: str = "BAILEYS_OUTBOX"
    prefix: str = "bs"
    replicas: int = 1
    ack_wait: float = 5.0
    connect_timeout: float = 2.0
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def dlq_stream(self) -> str:
        """The dead-letter stream's name."""
        return f"{self.stream}_DLQ"

    def describe(self) -> str:
        """Servers and stream, without credentials (for messages and ``outbox status``)."""
        return f"{'tls' if self.tls else 'nats'}://{','.join(self.servers)} stream {self.stream}"


def _number(opts: dict[str, list[str]], name: str, default: float, lo: float, hi: float) -> float:
    raw = opts.get(name, [None])[-1]
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise errors.ConfigError(f"outbox URL: {name} must be a number") from None
    if not lo <= value <= hi:
        raise errors.ConfigError(f"outbox URL: {name} must be between {lo:g} and {hi:g}")
    return value


def parse_nats_url(url: str) -> NatsOptions:
    """Parse ``url`` (ConfigError naming what is wrong, never echoing the URL)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise errors.ConfigError("outbox URL: expected nats://host:port or tls://host:port")
    netloc, _, query = rest.partition("?")
    netloc = netloc.rstrip("/")
    if "/" in netloc:
        raise errors.ConfigError("outbox URL: a path is not allowed (use ?stream=)")
    user = password = None
    if "@" in netloc:
        cred, _, netloc = netloc.rpartition("@")
        u, _, p = cred.partition(":")
        user, password = unquote(u) or None, unquote(p) or None
    hosts = tuple(h for h in netloc.split(",") if h)
    if not hosts:
        raise errors.ConfigError("outbox URL: no server given")
    for host in hosts:
        if not _HOST.match(host) or not 0 < int(host.rpartition(":")[2]) < 65536:
            raise errors.ConfigError("outbox URL: each server must be host:port")
    opts = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(opts) - set(_OPTS))
    if unknown:
        raise errors.ConfigError(f"outbox URL: unknown option(s) {', '.join(unknown)}")
    stream = opts.get("stream", ["BAILEYS_OUTBOX"])[-1]
    if not _NAME.match(stream):
        raise errors.ConfigError("outbox URL: stream must be 1-64 of A-Z a-z 0-9 - _")
    prefix = opts.get("prefix", ["bs"])[-1]
    if not _PREFIX.match(prefix):
        raise errors.ConfigError(
            "outbox URL: prefix must be dot-separated tokens of A-Z a-z 0-9 - _"
        )
    replicas = _number(opts, "replicas", 1, 1, 5)
    if replicas != int(replicas):
        raise errors.ConfigError("outbox URL: replicas must be a whole number")
    return NatsOptions(
        servers=hosts,
        tls=scheme == "tls",
        stream=stream,
        prefix=prefix,
        replicas=int(replicas),
        ack_wait=_number(opts, "ack_wait", 5.0, 0.05, 120.0),
        connect_timeout=_number(opts, "connect_timeout", 2.0, 0.05, 60.0),
        user=user,
        password=password,
    )
