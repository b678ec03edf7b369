"""Parse and validate a ``mongodb://`` / ``mongodb+srv://`` URL for the MongoDB backend.

pymongo parses the standard URI options itself; here we only make sure every query parameter is
one pymongo knows (pymongo would merely warn about a typo such as ``maxPoolSzie``), name the
offending one, and pick the database from the URL path. Nothing here does network I/O, so an
SRV record is resolved only when the backend opens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from pymongo import common, uri_parser
from pymongo.errors import ConfigurationError

from ...errors import ConfigError

DEFAULT_DATABASE = "baileys_store"
# MongoDB forbids /\. "$*<>:|? in database names; we accept a portable subset.
_DB_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
_KNOWN = frozenset(common.URI_OPTIONS_VALIDATOR_MAP) | frozenset(
    common.INTERNAL_URI_OPTION_NAME_MAP
)
# Query parameters whose values are secrets, kept out of every error message.
_SECRET_OPTIONS = ("tlscertificatekeyfilepassword", "authmechanismproperties")


@dataclass(frozen=True, slots=True)
class MongoSettings:
    """What the backend needs from its URL.

    Attributes:
        uri: The URL as given (pymongo reads hosts, credentials and options from it).
        database: Database holding the ``bs_*`` collections (URL path, default ``baileys_store``).
        client_defaults: Keyword options for ``AsyncMongoClient`` that the URL does not set.
        secrets: Strings (password, TLS key password) to mask in error messages.
    """

    uri: str
    database: str
    client_defaults: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _secrets(netloc: str, pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    userinfo = netloc.rpartition("@")[0]
    found = []
    if ":" in userinfo:
        raw = userinfo.partition(":")[2]
        found += [raw, unquote(raw), unquote_plus(raw)]
    found += [v for k, v in pairs if k.lower() in _SECRET_OPTIONS]
    # Longest first, so a secret containing another is masked whole.
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


def parse_mongo_url(url: str, *, op_timeout: float) -> MongoSettings:
    """Validate ``url`` and derive the client defaults.

    Defaults applied only when the URL does not set them: ``serverSelectionTimeoutMS``,
    ``connectTimeoutMS`` and ``socketTimeoutMS`` = ``op_timeout``; ``retryWrites`` and
    ``retryReads`` = true (the driver retries once, with the same transaction number, so a
    retried write is applied once; our own retry layer stays bounded on top of it);
    ``w`` = ``majority`` (a write, transactions' commits included, is acknowledged once a
    majority of the replica set has it, so a failover cannot roll it back; MongoDB 5.0+ has
    the same implicit default, but not with an arbiter, and 4.x defaults to ``w=1``);
    ``appname`` = ``baileys-store``. Everything else in the URL (``replicaSet``, several
    hosts, ``readPreference``, TLS) is pymongo's to read, unchanged.

    Raises:
        ConfigError: wrong scheme, no host, unknown or invalid option, bad database name.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigError(f"not a MongoDB URL (scheme {parts.scheme!r})")
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise ConfigError("MongoDB URL has no host: use mongodb://HOST[:PORT]/DATABASE")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError("MongoDB URL query must be NAME=VALUE pairs joined by &") from None
    settings = MongoSettings(url, DEFAULT_DATABASE, secrets=_secrets(parts.netloc, pairs))
    names = {k.lower() for k, _ in pairs}
    unknown = sorted(names - _KNOWN)
    if unknown:
        raise ConfigError(f"unknown MongoDB URL query parameter {unknown[0][:40]!r}")
    if parts.query:
        try:
            uri_parser.split_options(parts.query, validate=True, warn=False)
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(f"invalid MongoDB URL option: {settings.scrub(str(exc))}") from None
    database = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
    if _DB_RE.fullmatch(database) is None:
        raise ConfigError(
            f"invalid MongoDB database name {database[:70]!r}: use 1-63 of [A-Za-z0-9_-]"
        )
    ms = int(op_timeout * 1000)
    wanted: dict[str, Any] = {
        "serverSelectionTimeoutMS": ms,
        "connectTimeoutMS": ms,
        "socketTimeoutMS": ms,
        "retryWrites": True,
        "retryReads": True,
        "w": "majority",
        "appname": "baileys-store",
    }
    defaults = {k: v for k, v in wanted.items() if k.lower() not in names}
    return MongoSettings(url, database, defaults, settings.secrets)


__all__ = ["DEFAULT_DATABASE", "MongoSettings", "parse_mongo_url"]
