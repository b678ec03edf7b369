"""Configuration: one frozen pydantic model, loadable from ``BAILEYS_STORE_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .codec import Cipher, Codec, Compression, KeyRing, _ciphers, _compress, parse_master_key
from .errors import ConfigError

REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+sentinel", "rediss+sentinel"})
DURABLE_SCHEMES = frozenset(
    {"sqlite", "memory", "postgresql", "postgres", "mongodb", "mongodb+srv", *REDIS_SCHEMES}
)
CACHE_SCHEMES = frozenset({"memory", *REDIS_SCHEMES})
OUTBOX_SCHEMES = frozenset({"nats", "tls"})
ENV_PREFIX = "BAILEYS_STORE_"


def _describe(exc: ValidationError) -> str:
    # Built from locations and messages only: pydantic's own text repeats the input value,
    # which may be a master key.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        # Dict keys in a location are user input too: ``{KEY: 1}`` (id and key swapped) would
        # put the master key into the location, so only field names and int ids are shown.
        head, *rest = err["loc"] or ("config",)
        loc = ".".join(
            [str(head), *(str(p) if isinstance(p, int) or p == "[key]" else "*" for p in rest)]
        )
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # unparsable: show nothing of it rather than risk a password
        return "<unparsable url>"
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}").geturl()


class StoreConfig(BaseModel):
    """Everything :func:`open_store` needs. Defaults give the embedded store: SQLite + memory cache.

    Construction errors raise :class:`~baileys_store.errors.ConfigError` naming the field; the
    message never contains a master key.

    Attributes:
        durable: Source-of-truth URL: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
            ``memory://`` (tests only: nothing survives the process), ``postgresql://``
            (several hosts for failover), ``mongodb://``, ``redis://`` or
            ``redis+sentinel://host:port[,host:port...]/service``.
        cache: Cache tier URL (``memory://``, ``redis://``, ``redis+sentinel://...``) or
            ``None`` for no cache.
        compression: ``none``, ``snappy``, ``zstd`` or ``gzip``; applied to payloads of at least
            ``compression_threshold`` bytes, and kept only when it makes them smaller.
        compression_threshold: Smallest serialized payload (bytes) worth compressing.
        encryption: ``none``, ``aes-256-gcm`` or ``xsalsa20-poly1305``.
        master_keys: ``{key_id: key}``; each key 32 bytes as 64 hex digits or base64. Also
            accepted as the string ``"1:KEY,2:KEY"``.
        active_key_id: The key new writes use; default: the highest id.
        allow_plaintext_reads: With encryption on, still read plaintext records (they are
            refused with ``DecryptError`` otherwise: anyone able to write the database could
            forge them) and open a store written without encryption. The migration switch: set
            it, run ``baileys-store keys rotate``, then drop it. Off by default.
        create_dirs: Create a missing parent directory of the SQLite file (mode 0700). Off by
            default: a typo in a path must fail (``ConfigError``), not open an empty store.
        sqlite_synchronous: ``full`` (fsync on every commit, the default) or ``normal`` (faster;
            in WAL mode a power loss or OS crash can drop the last commits, never corrupt the file).
        cache_max_entries: Bound of the in-process ``memory://`` cache (records).
        max_value_bytes: Largest serialized value a write accepts.
        op_timeout: Deadline (seconds) of each call to a tier and of a write's wait for the
            session's earlier writes; past it ``UnavailableError``.
        write_mode: With a Redis cache: ``write-through`` (durable first, then the cache; the
            default) or ``write-behind`` (cache + outbox in one Redis step, acknowledged, then
            drained to the durable tier by a worker).
        durable_outage: With a Redis cache, what writes do while the durable tier is down:
            ``buffer`` them through the outbox (drained when it recovers) or ``fail``.
        lease: Per-session leases with fencing: ``auto`` (on when the cache is Redis), ``on``
            (also with the durable tier alone, which then keeps the leases), ``off``.
        lease_ttl: Seconds a lease lives without renewal (renewed every third of it).
        lease_wait: Seconds a write waits for a lease held by another process before raising
            ``LeaseHeldError``.
        l1_max_entries: Bound of the in-process L1 in front of a Redis cache (records; 0: no
            L1). Used only while this process holds the session's lease.
        breaker_failure_pct: A tier's breaker opens when failures are more than this share of
            the calls in its window.
        breaker_window: Seconds of the breaker's rolling window.
        breaker_buckets: Buckets the window is cut into.
        breaker_min_calls: Calls in the window below which the breaker never opens.
        breaker_reset_timeout: Seconds an open breaker waits before one trial call.
        outbox_worker: Run the outbox worker inside the store (else run
            ``baileys-store outbox worker`` elsewhere).
        outbox_max_attempts: Failed applies of an outbox entry before it moves to the
            dead-letter list.
        outbox_claim_timeout: Seconds after which a worker's claim on a session's outbox
            expires and another worker redelivers its entries.
        outbox_batch: Most outbox entries one worker applies in one durable transaction.
        outbox: The write-behind outbox transport: ``redis`` (in the Redis cache, atomic with
            the cache write: the default) or a NATS JetStream URL
            ``nats://[user:password@]host:port[,host:port...][?options]`` (``tls://`` for TLS;
            acknowledged once the stream stored the entry). Options: ``stream``
            (``BAILEYS_OUTBOX``; dead letters in ``<stream>_DLQ``), ``prefix`` (``bs``),
            ``replicas`` (1-5), ``ack_wait`` (seconds, 5, capped by ``op_timeout``),
            ``connect_timeout`` (seconds, 2).
        cache_replica_acks: With a Redis cache: replicas that must acknowledge each
            write-behind step and each lease or fence change (``WAIT n``) before it is
            acknowledged; past ``op_timeout`` the write raises ``UnavailableError``. 0 (the
            default): Redis' asynchronous replication, no wait.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    durable: str = "sqlite:///baileys-store.db"
    cache: str | None = "memory://"
    compression: Literal["none", "snappy", "zstd", "gzip"] = "snappy"
    compression_threshold: int = Field(default=1024, ge=0)
    encryption: Literal["none", "aes-256-gcm", "xsalsa20-poly1305"] = "none"
    master_keys: dict[int, SecretStr] = Field(default_factory=dict)
    active_key_id: int | None = None
    allow_plaintext_reads: bool = False
    create_dirs: bool = False
    sqlite_synchronous: Literal["full", "normal"] = "full"
    cache_max_entries: int = Field(default=100_000, ge=0)
    max_value_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    op_timeout: float = Field(default=10.0, gt=0)
    write_mode: Literal["write-through", "write-behind"] = "write-through"
    durable_outage: Literal["buffer", "fail"] = "buffer"
    lease: Literal["auto", "on", "off"] = "auto"
    lease_ttl: float = Field(default=30.0, ge=1)
    lease_wait: float = Field(default=0.0, ge=0)
    l1_max_entries: int = Field(default=10_000, ge=0)
    breaker_failure_pct: float = Field(default=50.0, gt=0, le=100)
    breaker_window: float = Field(default=10.0, gt=0)
    breaker_buckets: int = Field(default=10, ge=1, le=1000)
    breaker_min_calls: int = Field(default=10, ge=1)
    breaker_reset_timeout: float = Field(default=30.0, gt=0)
    outbox_worker: bool = True
    outbox_max_attempts: int = Field(default=10, ge=1)
    outbox_claim_timeout: float = Field(default=30.0, ge=1)
    outbox_batch: int = Field(default=256, ge=1, le=10_000)
    outbox: str = "redis"
    cache_replica_acks: int = Field(default=0, ge=0, le=16)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("durable")
    @classmethod
    def _check_durable(cls, v: str) -> str:
        scheme = urlsplit(v).scheme
        if scheme not in DURABLE_SCHEMES:
            raise ValueError(
                f"unknown scheme {scheme!r}; expected one of {sorted(DURABLE_SCHEMES)}"
            )
        return v

    @field_validator("cache")
    @classmethod
    def _check_cache(cls, v: str | None) -> str | None:
        if v in (None, "", "none"):
            return None
        scheme = urlsplit(v).scheme
        if scheme not in CACHE_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; expected one of {sorted(CACHE_SCHEMES)}")
        return v

    @field_validator("outbox")
    @classmethod
    def _check_outbox(cls, v: str) -> str:
        if v == "redis":
            return v
        scheme = urlsplit(v).scheme
        if scheme not in OUTBOX_SCHEMES:
            raise ValueError(f"unknown outbox {scheme or v!r}; expected 'redis' or a nats:// URL")
        return v

    @field_validator("master_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            out: dict[int, str] = {}
            for part in filter(None, (p.strip() for p in v.split(","))):
                kid, sep, key = part.partition(":")
                if not sep or not kid.strip().isdecimal():
                    raise ValueError("expected 'ID:KEY[,ID:KEY...]' with integer ids")
                if int(kid) in out:  # two keys for one id: some blobs would not decrypt
                    raise ValueError(f"master key id {int(kid)} is given twice")
                out[int(kid)] = key
            return out
        return v

    @field_validator("master_keys")
    @classmethod
    def _parse_keys(cls, v: dict[int, SecretStr]) -> dict[int, SecretStr]:
        for kid, key in v.items():
            try:
                parse_master_key(key.get_secret_value(), key_id=kid)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        KeyRing({k: b"\0" * 32 for k in v}, None)  # id range check
        return v

    def model_post_init(self, context: Any, /) -> None:
        """Cross-field checks: encryption needs keys; the active key must exist."""
        if self.encryption != "none" and not self.master_keys:
            raise ConfigError(f"encryption {self.encryption!r} needs master_keys")
        if self.active_key_id is not None and self.active_key_id not in self.master_keys:
            raise ConfigError(f"active_key_id {self.active_key_id} is not in master_keys")
        if self.write_mode == "write-behind" and not self.redis_cache:
            raise ConfigError("write_mode 'write-behind' needs a redis:// cache")
        if self.cache_replica_acks and not self.redis_cache:
            raise ConfigError("cache_replica_acks needs a redis:// cache")
        if self.outbox != "redis" and self.write_mode != "write-behind":
            raise ConfigError("outbox: a broker outbox is used only with write_mode 'write-behind'")

    @classmethod
    def development(cls, **overrides: Any) -> StoreConfig:
        """Local work: SQLite (``baileys-store-dev.db``, no fsync per commit) + in-process cache.

        No encryption; everything else default. ``overrides`` win.
        """
        base: dict[str, Any] = {
            "durable": "sqlite:///baileys-store-dev.db",
            "sqlite_synchronous": "normal",
        }
        return cls(**{**base, **overrides})

    @classmethod
    def production(cls, **overrides: Any) -> StoreConfig:
        """Production: encryption on, fsync per SQLite commit, zstd, leases, outage buffering.

        Encryption is AES-256-GCM, so ``master_keys`` must be given; the durable tier never
        expires anything. Pass at least ``durable=`` (and usually ``cache="redis://…"``) and
        ``master_keys=``; ``overrides`` win, except that encryption cannot be turned off here.

        Raises:
            ConfigError: no master keys, or ``encryption="none"``.
        """
        if overrides.get("encryption") == "none":
            raise ConfigError("production: encryption cannot be 'none'")
        base: dict[str, Any] = {
            "encryption": "aes-256-gcm",
            "sqlite_synchronous": "full",
            "compression": "zstd",
            "durable_outage": "buffer",
        }
        return cls(**{**base, **overrides})

    @classmethod
    def testing(cls, **overrides: Any) -> StoreConfig:
        """Tests: everything in memory (``memory://`` tiers), short timeouts, a quick breaker."""
        base: dict[str, Any] = {
            "durable": "memory://",
            "cache": "memory://",
            "op_timeout": 2.0,
            "breaker_reset_timeout": 1.0,
            "lease_ttl": 5.0,
        }
        return cls(**{**base, **overrides})

    @property
    def redis_cache(self) -> bool:
        """True when the cache tier is Redis (the hybrid store)."""
        return self.cache is not None and urlsplit(self.cache).scheme in REDIS_SCHEMES

    @property
    def leases(self) -> bool:
        """True when sessions are leased (``lease``, resolved against the cache tier)."""
        return self.lease == "on" or (self.lease == "auto" and self.redis_cache)

    def keyring(self) -> KeyRing:
        """The parsed key ring."""
        keys = {
            k: parse_master_key(v.get_secret_value(), key_id=k) for k, v in self.master_keys.items()
        }
        return KeyRing(keys, self.active_key_id)

    def codec(self) -> Codec:
        """A :class:`Codec` built from these settings."""
        return Codec(
            compression=_compress.NAMES[self.compression],
            threshold=self.compression_threshold,
            cipher=_ciphers.NAMES[self.encryption],
            keyring=self.keyring(),
            max_value_bytes=self.max_value_bytes,
            allow_plaintext=self.allow_plaintext_reads,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StoreConfig:
        """Build a config from ``BAILEYS_STORE_<FIELD>`` variables (e.g. ``BAILEYS_STORE_DURABLE``).

        ``BAILEYS_STORE_CACHE=none`` disables the cache. Keyword ``overrides`` win over the
        environment. Unknown ``BAILEYS_STORE_*`` variables are an error, so a typo is not ignored.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        fields = set(cls.model_fields)
        for name, value in env.items():
            if not name.startswith(ENV_PREFIX):
                continue
            field = name[len(ENV_PREFIX) :].lower()
            if field not in fields:
                raise ConfigError(f"unknown setting {name}; known: {sorted(fields)}")
            data[field] = value
        data.update(overrides)
        return cls(**data)

    def __repr_args__(self) -> Any:
        # SecretStr already masks master keys; URLs may carry a server password (for example
        # ``postgresql://app:PASSWORD@db/x``), which must not reach logs through repr() either.
        for name, value in super().__repr_args__():
            masked = name in ("durable", "cache", "outbox") and isinstance(value, str)
            yield name, (redact_url(value) if masked else value)


__all__ = ["Cipher", "Compression", "StoreConfig"]
