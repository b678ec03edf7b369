"""Parse and validate a ``postgresql://`` URL for the PostgreSQL backend.

Our own query parameters are validated and stripped; every other parameter goes to libpq as
given. Nothing here does I/O.

Several hosts (``postgresql://h1:5432,h2:5433/db``, or libpq's ``?host=h1,h2&port=5432,5433``)
are passed on unchanged: psycopg tries them in turn (``load_balance_hosts=random``: in random
order), each within ``connect_timeout``. With more than one host and no
``target_session_attrs``, ``read-write`` is the default here (libpq's is ``any``): a store
connected to a standby would fail every write and could read values older than the primary's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ... import errors
from ._schema import DEFAULT_SCHEMA

_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_OWN_PARAMS = ("schema", "min_size", "max_size", "timeout", "prepare_threshold", "retries")
_SECRET_PARAMS = ("password", "sslpassword")
_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
_LOAD_BALANCE = ("disable", "random")
# The session attributes that guarantee a writable primary: a pooled connection that reports
# itself read-only (a demoted server) is then dropped, never reused.
_PRIMARY_ATTRS = frozenset({"read-write", "primary"})


@dataclass(frozen=True, slots=True)
class PgSettings:
    """What the backend takes from its URL.

    Attributes:
        conninfo: The URL without our own parameters, handed to libpq.
        schema: Schema holding the tables (``schema=``, default ``baileys_store``).
        min_size: Connections kept open (``min_size=``, default 1).
        max_size: Most connections open at once (``max_size=``, default 10).
        timeout: Seconds to wait for a free pooled connection (``timeout=``, default op_timeout).
        prepare_threshold: psycopg's ``prepare_threshold`` (``none`` by default: pgbouncer-safe).
        retries: Extra attempts after a transient error (``retries=``, default 3).
        connect_kwargs: libpq defaults the URL does not set (connect_timeout, application_name,
            target_session_attrs=read-write with several hosts).
        hosts: ``host:port`` of each server the URL names, in order (no credentials).
        target_session_attrs: The effective libpq ``target_session_attrs``.
        secrets: Strings to mask in every error message.
    """

    conninfo: str = field(repr=False)  # may hold the password
    schema: str = DEFAULT_SCHEMA
    min_size: int = 1
    max_size: int = 10
    timeout: float = 10.0
    prepare_threshold: int | None = None
    retries: int = 3
    connect_kwargs: dict[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    target_session_attrs: str = "any"
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def wants_primary(self) -> bool:
        """Only a writable primary will do (``target_session_attrs`` read-write or primary)."""
        return self.target_session_attrs in _PRIMARY_ATTRS

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL replaced by ``***``."""
        return _scrub(text, self.secrets)


def _number(name: str, raw: str, kind: type[int] | type[float], low: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise errors.ConfigError(
            f"PostgreSQL URL option {name}={raw[:20]!r} is not a number"
        ) from None
    if not (value >= low and math.isfinite(value)):
        raise errors.ConfigError(f"PostgreSQL URL option {name} must be >= {low}")
    return value


def parse_postgres_url(url: str, *, op_timeout: float) -> PgSettings:
    """Split our options off a ``postgresql://`` URL and validate everything.

    Raises:
        ConfigError: wrong scheme, an unknown or repeated parameter, a bad value. The message
            names the parameter and never contains the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise errors.ConfigError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
    # The libpq part of the query is passed on byte for byte: decoding and re-encoding would
    # turn "%20" into "+", which libpq does not read as a space.
    own: dict[str, str] = {}
    rest: list[str] = []
    seen: set[str] = set()
    found: list[str] = []
    for segment in filter(None, parts.query.split("&")):
        raw_name, sep, raw_value = segment.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if not sep or not name:
            raise errors.ConfigError("PostgreSQL URL query must be NAME=VALUE pairs joined by &")
        if name in seen:
            raise errors.ConfigError(f"PostgreSQL URL parameter {name[:40]!r} is given twice")
        seen.add(name)
        if name in _SECRET_PARAMS:
            found += [raw_value, value]
        if name in _OWN_PARAMS:
            own[name] = value
        else:
            rest.append(segment)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        raw = userinfo.partition(":")[2]
        found += [raw, unquote(raw)]
    secrets = tuple(sorted({s for s in found if s}, key=len, reverse=True))
    conninfo = urlunsplit(parts._replace(query="&".join(rest)))
    if not parts.netloc and url.startswith(f"{parts.scheme}://"):
        # urlunsplit drops the empty authority of "postgresql:///db?host=a,b" (libpq's form
        # with the hosts in the query), and libpq cannot read "postgresql:/db".
        conninfo = f"{parts.scheme}://{conninfo[len(parts.scheme) + 1 :]}"
    try:
        libpq = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        raise errors.ConfigError(f"invalid PostgreSQL URL: {_scrub(text, secrets)}") from None
    schema = own.get("schema", DEFAULT_SCHEMA)
    if _SCHEMA_RE.fullmatch(schema) is None:
        raise errors.ConfigError(f"invalid schema {schema[:70]!r}: use 1-63 of [A-Za-z0-9_]")
    min_size = _number("min_size", own.get("min_size", "1"), int, 0)
    max_size = _number("max_size", own.get("max_size", "10"), int, 1)
    if min_size > max_size:
        raise errors.ConfigError(f"PostgreSQL URL: min_size {min_size} > max_size {max_size}")
    raw_prepare = own.get("prepare_threshold", "none").lower()
    prepare = None if raw_prepare == "none" else _number("prepare_threshold", raw_prepare, int, 0)
    hosts = _hosts(libpq)
    attrs = _choice(libpq, "target_session_attrs", _SESSION_ATTRS)
    _choice(libpq, "load_balance_hosts", _LOAD_BALANCE)
    defaults = {
        "connect_timeout": str(max(2, math.ceil(op_timeout))),
        "application_name": "baileys-store",
        "target_session_attrs": "read-write" if len(hosts) > 1 else "any",
    }
    return PgSettings(
        conninfo=conninfo,
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        timeout=_number("timeout", own.get("timeout", str(op_timeout)), float, 0.001),
        prepare_threshold=prepare,
        retries=_number("retries", own.get("retries", "3"), int, 0),
        connect_kwargs={k: v for k, v in defaults.items() if k not in libpq and v != "any"},
        hosts=hosts,
        target_session_attrs=attrs or defaults["target_session_attrs"],
        secrets=secrets,
    )


def _choice(libpq: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    """The value of ``name`` if the URL sets it; ConfigError unless it is one of ``allowed``."""
    value = libpq.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise errors.ConfigError(
            f"PostgreSQL URL option {name}={str(value)[:30]!r} is not one of {', '.join(allowed)}"
        )
    return str(value)


def _hosts(libpq: dict[str, Any]) -> tuple[str, ...]:
    """``host:port`` per server, checked as libpq would at connect time (one port, or one each)."""
    hosts = str(libpq.get("host") or libpq.get("hostaddr") or "").split(",")
    ports = str(libpq.get("port") or "").split(",")
    if len(ports) not in (1, len(hosts)):
        raise errors.ConfigError(
            f"PostgreSQL URL names {len(hosts)} hosts but {len(ports)} ports: give one port, "
            "or one per host"
        )
    for n, port in enumerate(ports, 1):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise errors.ConfigError(f"PostgreSQL URL port #{n} {port[:10]!r} is not a port number")
    if len(hosts) > 1 and not all(hosts):
        empty = hosts.index("") + 1
        raise errors.ConfigError(f"PostgreSQL URL host #{empty} of {len(hosts)} is empty")
    ports = ports * len(hosts) if len(ports) == 1 else ports
    return tuple(f"{h or 'localhost'}:{p or 5432}" for h, p in zip(hosts, ports, strict=True))


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
