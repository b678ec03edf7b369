"""StoreConfig: defaults, every field, ``from_env``, strict master keys, no key in any text."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from baileys_store import StoreConfig, errors
from baileys_store.codec import Cipher, Compression, parse_master_key, record_aad

AAD = record_aad("k", "ns", "s", "session", "1.0")
# Bytes whose base64 has both "+" and "/" (std) or "-" and "_" (urlsafe) in it.
KEY = bytes([0xFB, 0xEF, 0xBE, 0xFF, 0xFF, 0xFF]) + secrets.token_bytes(26)
KEY2 = secrets.token_bytes(32)


def forms(raw: bytes) -> list[str]:
    """Every textual form a key could leak in."""
    return [
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1][:40],
    ]


def assert_no_key(text: str, *keys: bytes, extra: tuple[str, ...] = ()) -> None:
    for raw in keys:
        for form in forms(raw):
            assert form not in text
    for literal in extra:
        assert literal not in text


# --- defaults and fields -------------------------------------------------------------------


def test_defaults_are_the_embedded_store() -> None:
    cfg = StoreConfig()
    assert cfg.durable == "sqlite:///baileys-store.db"
    assert cfg.cache == "memory://"
    assert cfg.compression == "snappy"
    assert cfg.compression_threshold == 1024
    assert cfg.encryption == "none"
    assert cfg.master_keys == {}
    assert cfg.active_key_id is None
    assert cfg.sqlite_synchronous == "full"
    assert cfg.cache_max_entries == 100_000
    assert cfg.max_value_bytes == 16 * 1024 * 1024
    assert cfg.op_timeout == 10.0
    blob = cfg.codec().encode(b"x" * 4000, AAD)
    assert (blob[2], blob[3]) == (Compression.SNAPPY, Cipher.NONE)
    assert cfg.codec().encode(b"x" * 100, AAD)[2] == Compression.NONE


ALL_FIELDS: dict[str, Any] = {
    "durable": "postgresql://u@127.0.0.1:5432/test",
    "cache": "redis://127.0.0.1:6379/0",
    "compression": "zstd",
    "compression_threshold": 0,
    "encryption": "xsalsa20-poly1305",
    "master_keys": {1: KEY.hex(), 2: base64.b64encode(KEY2).decode()},
    "active_key_id": 1,
    "allow_plaintext_reads": True,
    "create_dirs": True,
    "sqlite_synchronous": "normal",
    "cache_max_entries": 0,
    "max_value_bytes": 4096,
    "op_timeout": 0.5,
    "write_mode": "write-behind",
    "durable_outage": "fail",
    "lease": "on",
    "lease_ttl": 12.0,
    "lease_wait": 1.5,
    "l1_max_entries": 7,
    "breaker_failure_pct": 25.0,
    "breaker_window": 4.0,
    "breaker_buckets": 8,
    "breaker_min_calls": 3,
    "breaker_reset_timeout": 2.0,
    "outbox_worker": False,
    "outbox_max_attempts": 4,
    "outbox_claim_timeout": 9.0,
    "outbox_batch": 64,
    "outbox": "nats://127.0.0.1:4222",
    "cache_replica_acks": 1,
}


def test_every_field_is_kept_and_drives_the_codec() -> None:
    cfg = StoreConfig(**ALL_FIELDS)
    for name, value in ALL_FIELDS.items():
        if name != "master_keys":
            assert getattr(cfg, name) == value
    assert {k: v.get_secret_value() for k, v in cfg.master_keys.items()} == ALL_FIELDS[
        "master_keys"
    ]
    assert set(StoreConfig.model_fields) == set(ALL_FIELDS)
    ring = cfg.keyring()
    assert (ring.get(1), ring.get(2), ring.active_id) == (KEY, KEY2, 1)
    codec = cfg.codec()
    blob = codec.encode(b"y" * 200, AAD)
    assert (blob[2], blob[3], codec.key_id_of(blob)) == (
        Compression.ZSTD,
        Cipher.XSALSA20_POLY1305,
        1,
    )
    with pytest.raises(errors.InvalidInputError, match="over the limit of 4096"):
        codec.encode(b"z" * 5000, AAD)
    # allow_plaintext_reads reaches the codec: a plaintext blob reads back.
    plain = StoreConfig(compression="none").codec().encode(b"p", AAD)
    assert codec.decode(plain, AAD) == b"p"
    strict = StoreConfig(**{**ALL_FIELDS, "allow_plaintext_reads": False}).codec()
    with pytest.raises(errors.DecryptError, match="plaintext record"):
        strict.decode(plain, AAD)


@pytest.mark.parametrize("cache", [None, "", "none"])
def test_no_cache(cache: str | None) -> None:
    assert StoreConfig(cache=cache).cache is None


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///rel.db",
        "sqlite:////abs/x.db",
        "memory://",
        "postgresql://h/db",
        "postgres://h",
        "mongodb://h/db",
        "mongodb+srv://cluster.example",
        "redis://h",
        "rediss://h:6380/1",
    ],
)
def test_durable_schemes(url: str) -> None:
    assert StoreConfig(durable=url).durable == url


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"durable": "ftp://host/x"}, "durable"),
        ({"durable": "/var/lib/x.db"}, "durable"),
        ({"durable": ""}, "durable"),
        ({"cache": "sqlite:///x.db"}, "cache"),
        ({"cache": "mongodb://h"}, "cache"),
        ({"compression": "lz4"}, "compression"),
        ({"compression_threshold": -1}, "compression_threshold"),
        ({"encryption": "secretbox"}, "encryption"),
        ({"encryption": "aes-256-gcm"}, "master_keys"),
        ({"encryption": "xsalsa20-poly1305", "master_keys": {}}, "master_keys"),
        ({"master_keys": {1: KEY.hex()}, "active_key_id": 2}, "active_key_id 2"),
        ({"active_key_id": 1}, "active_key_id 1"),
        ({"master_keys": {0: KEY.hex()}}, "master key id 0"),
        ({"master_keys": {65536: KEY.hex()}}, "master key id 65536"),
        ({"master_keys": "1=abc"}, "master_keys"),
        ({"master_keys": "x:abc"}, "master_keys"),
        ({"master_keys": f"1:{KEY.hex()},01:{KEY2.hex()}"}, "master key id 1 is given twice"),
        ({"master_keys": f"\u00b2:{KEY.hex()}"}, "master_keys"),
        ({"master_keys": [KEY.hex()]}, "master_keys"),
        ({"sqlite_synchronous": "off"}, "sqlite_synchronous"),
        ({"cache_max_entries": -1}, "cache_max_entries"),
        ({"max_value_bytes": 1023}, "max_value_bytes"),
        ({"op_timeout": 0}, "op_timeout"),
        ({"op_timeout": "soon"}, "op_timeout"),
        ({"durabel": "memory://"}, "durabel"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.ConfigError) as exc_info:
        StoreConfig(**kwargs)
    assert field in str(exc_info.value)
    assert isinstance(exc_info.value, errors.StoreError)
    assert_no_key(str(exc_info.value), KEY)


# --- master keys ---------------------------------------------------------------------------

ACCEPTED = {
    "hex": KEY.hex(),
    "HEX": KEY.hex().upper(),
    "base64": base64.b64encode(KEY).decode(),
    "base64-unpadded": base64.b64encode(KEY).decode().rstrip("="),
    "urlsafe": base64.urlsafe_b64encode(KEY).decode(),
    "urlsafe-unpadded": base64.urlsafe_b64encode(KEY).decode().rstrip("="),
    "spaces-around": f"  {KEY.hex()}\n",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_master_key_formats(text: str) -> None:
    assert {"+", "/"} <= set(ACCEPTED["base64"])
    assert {"-", "_"} <= set(ACCEPTED["urlsafe"])
    assert parse_master_key(text, key_id=1) == KEY
    cfg = StoreConfig(encryption="aes-256-gcm", master_keys={3: text})
    assert cfg.keyring().get(3) == KEY
    codec = cfg.codec()
    assert codec.decode(codec.encode(b"v", AAD), AAD) == b"v"


_B64 = base64.b64encode(KEY).decode()
MALFORMED = {
    "empty": "",
    "blank": "   ",
    "hex-63": KEY.hex()[:63],
    "hex-65": KEY.hex() + "a",
    "hex-62": KEY.hex()[:62],
    "hex-66": KEY.hex() + "ab",
    "hex-non-digit": KEY.hex()[:63] + "g",
    "base64-31-bytes": base64.b64encode(KEY[:31]).decode(),
    "base64-33-bytes": base64.b64encode(KEY + b"\x01").decode(),
    "base64-bad-char": _B64[:10] + "*" + _B64[11:],
    "base64-inner-space": _B64[:10] + " " + _B64[10:],
    "base64-bad-padding": _B64.rstrip("=") + "===",
    "raw-32-chars": "k" * 32,
    "non-ascii": "é" * 43,
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_master_keys_are_config_errors_without_the_key(text: str) -> None:
    with pytest.raises(errors.ConfigError) as exc_info:
        StoreConfig(encryption="aes-256-gcm", master_keys={1: text})
    message = str(exc_info.value)
    assert "master key 1" in message
    secret = [text.strip()] if text.strip() else []
    assert_no_key(message, KEY, KEY[:31], extra=tuple(secret))
    with pytest.raises(errors.ConfigError):
        StoreConfig.from_env({"BAILEYS_STORE_MASTER_KEYS": f"1:{text}"})


def test_swapped_id_and_key_does_not_leak_the_key() -> None:
    with pytest.raises(errors.ConfigError) as exc_info:
        StoreConfig(master_keys={KEY.hex(): 1})
    assert "master_keys" in str(exc_info.value)
    assert_no_key(str(exc_info.value), KEY)


def test_repr_str_and_dump_never_show_a_key() -> None:
    cfg = StoreConfig(encryption="aes-256-gcm", master_keys={1: KEY.hex(), 2: _B64})
    texts = [
        repr(cfg),
        str(cfg),
        f"{cfg}",
        f"{cfg!r}",
        cfg.model_dump_json(),
        str(cfg.model_dump()),
        repr(cfg.master_keys),
        repr(cfg.keyring()),
    ]
    for text in texts:
        assert_no_key(text, KEY)
    assert "**********" in repr(cfg)


# --- from_env ------------------------------------------------------------------------------


def test_from_env_reads_every_field() -> None:
    env = {
        "BAILEYS_STORE_DURABLE": "mongodb://127.0.0.1:27017/db",
        "BAILEYS_STORE_CACHE": "rediss://h:6380/2",
        "BAILEYS_STORE_COMPRESSION": "gzip",
        "BAILEYS_STORE_COMPRESSION_THRESHOLD": "0",
        "BAILEYS_STORE_ENCRYPTION": "aes-256-gcm",
        "BAILEYS_STORE_MASTER_KEYS": f"1:{KEY.hex()}, 2:{_B64}",
        "BAILEYS_STORE_ACTIVE_KEY_ID": "1",
        "BAILEYS_STORE_ALLOW_PLAINTEXT_READS": "true",
        "BAILEYS_STORE_CREATE_DIRS": "true",
        "BAILEYS_STORE_SQLITE_SYNCHRONOUS": "normal",
        "BAILEYS_STORE_CACHE_MAX_ENTRIES": "500",
        "BAILEYS_STORE_MAX_VALUE_BYTES": "2048",
        "BAILEYS_STORE_OP_TIMEOUT": "2.5",
        "BAILEYS_STORE_WRITE_MODE": "write-behind",
        "BAILEYS_STORE_DURABLE_OUTAGE": "fail",
        "BAILEYS_STORE_LEASE": "off",
        "BAILEYS_STORE_LEASE_TTL": "12",
        "BAILEYS_STORE_LEASE_WAIT": "0.5",
        "BAILEYS_STORE_L1_MAX_ENTRIES": "0",
        "BAILEYS_STORE_BREAKER_FAILURE_PCT": "75",
        "BAILEYS_STORE_BREAKER_WINDOW": "5",
        "BAILEYS_STORE_BREAKER_BUCKETS": "5",
        "BAILEYS_STORE_BREAKER_MIN_CALLS": "4",
        "BAILEYS_STORE_BREAKER_RESET_TIMEOUT": "3",
        "BAILEYS_STORE_OUTBOX_WORKER": "false",
        "BAILEYS_STORE_OUTBOX_MAX_ATTEMPTS": "2",
        "BAILEYS_STORE_OUTBOX_CLAIM_TIMEOUT": "4",
        "BAILEYS_STORE_OUTBOX_BATCH": "10",
        "BAILEYS_STORE_OUTBOX": "nats://127.0.0.1:4222",
        "BAILEYS_STORE_CACHE_REPLICA_ACKS": "1",
        "HOME": "/root",
        "BAILEYS_STOREX": "not ours",
        "baileys_store_durable": "ignored: lower case",
    }
    cfg = StoreConfig.from_env(env)
    ours = {n[len("BAILEYS_STORE_") :].lower() for n in env if n.startswith("BAILEYS_STORE_")}
    assert ours == set(StoreConfig.model_fields)
    assert cfg.durable == "mongodb://127.0.0.1:27017/db"
    assert cfg.cache == "rediss://h:6380/2"
    assert (cfg.compression, cfg.compression_threshold) == ("gzip", 0)
    assert cfg.encryption == "aes-256-gcm"
    assert cfg.keyring().get(1) == KEY
    assert cfg.keyring().get(2) == KEY
    assert cfg.active_key_id == 1
    assert (cfg.allow_plaintext_reads, cfg.create_dirs) == (True, True)
    assert cfg.sqlite_synchronous == "normal"
    assert (cfg.cache_max_entries, cfg.max_value_bytes, cfg.op_timeout) == (500, 2048, 2.5)
    assert (cfg.write_mode, cfg.durable_outage, cfg.lease, cfg.leases) == (
        "write-behind",
        "fail",
        "off",
        False,
    )
    assert (cfg.lease_ttl, cfg.lease_wait, cfg.l1_max_entries) == (12.0, 0.5, 0)
    assert (
        cfg.breaker_failure_pct,
        cfg.breaker_window,
        cfg.breaker_buckets,
        cfg.breaker_min_calls,
        cfg.breaker_reset_timeout,
    ) == (75.0, 5.0, 5, 4, 3.0)
    assert (
        cfg.outbox_worker,
        cfg.outbox_max_attempts,
        cfg.outbox_claim_timeout,
        cfg.outbox_batch,
    ) == (False, 2, 4.0, 10)
    assert (cfg.outbox, cfg.cache_replica_acks) == ("nats://127.0.0.1:4222", 1)


def test_outbox_and_replica_acks_are_checked() -> None:
    with pytest.raises(errors.ConfigError, match="unknown outbox"):
        StoreConfig(cache="redis://h", write_mode="write-behind", outbox="kafka://h")
    with pytest.raises(errors.ConfigError, match="only with write_mode"):
        StoreConfig(cache="redis://h", outbox="nats://h:4222")
    with pytest.raises(errors.ConfigError, match="cache_replica_acks needs"):
        StoreConfig(cache_replica_acks=1)
    with pytest.raises(errors.ConfigError, match="cache_replica_acks"):
        StoreConfig(cache="redis://h", cache_replica_acks=-1)
    assert StoreConfig(cache="redis+sentinel://h:26379/m", cache_replica_acks=2).redis_cache
    masked = repr(StoreConfig(cache="redis://h", write_mode="write-behind", outbox="nats://u:pw@h"))
    assert "pw" not in masked


def test_write_behind_needs_a_redis_cache() -> None:
    with pytest.raises(errors.ConfigError, match="write-behind"):
        StoreConfig(write_mode="write-behind")
    assert StoreConfig(cache="redis://h", write_mode="write-behind").leases


def test_from_env_cache_none_and_overrides() -> None:
    env = {"BAILEYS_STORE_CACHE": "none", "BAILEYS_STORE_DURABLE": "memory://"}
    assert StoreConfig.from_env(env).cache is None
    cfg = StoreConfig.from_env(env, durable="sqlite:///o.db", cache="memory://")
    assert (cfg.durable, cfg.cache) == ("sqlite:///o.db", "memory://")
    assert StoreConfig.from_env({}) == StoreConfig()


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAILEYS_STORE_DURABLE", "memory://")
    monkeypatch.setenv("BAILEYS_STORE_OP_TIMEOUT", "3")
    cfg = StoreConfig.from_env()
    assert (cfg.durable, cfg.op_timeout) == ("memory://", 3.0)


@pytest.mark.parametrize(
    "name", ["BAILEYS_STORE_MASTER_KEY", "BAILEYS_STORE_", "BAILEYS_STORE_DURABLE_URL"]
)
def test_from_env_unknown_variable_is_an_error(name: str) -> None:
    with pytest.raises(errors.ConfigError, match=name) as exc_info:
        StoreConfig.from_env({name: KEY.hex()})
    assert_no_key(str(exc_info.value), KEY)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BAILEYS_STORE_COMPRESSION_THRESHOLD", "many"),
        ("BAILEYS_STORE_ACTIVE_KEY_ID", ""),
        ("BAILEYS_STORE_MASTER_KEYS", KEY.hex()),  # no "ID:"
        ("BAILEYS_STORE_MASTER_KEYS", f"one:{KEY.hex()}"),
        ("BAILEYS_STORE_ENCRYPTION", "aes-256-gcm"),  # without keys
        ("BAILEYS_STORE_DURABLE", "mysql://h/db"),
    ],
)
def test_from_env_bad_values(name: str, value: str) -> None:
    with pytest.raises(errors.ConfigError) as exc_info:
        StoreConfig.from_env({name: value})
    assert_no_key(str(exc_info.value), KEY)


@pytest.mark.parametrize(
    ("durable", "cache", "shown"),
    [
        ("postgresql://app:pa%40ss@db:5432/x", None, "postgresql://app:***@db:5432/x"),
        ("mongodb://u:pass@h1,h2/db?replicaSet=rs", None, "mongodb://u:***@h1,h2/db?replicaSet=rs"),
        ("redis://127.0.0.1/0", "rediss://:pass@cache:6380/1", "rediss://:***@cache:6380/1"),
    ],
)
def test_repr_masks_server_passwords(durable: str, cache: str | None, shown: str) -> None:
    cfg = StoreConfig(durable=durable, cache=cache)
    for text in (repr(cfg), str(cfg)):
        assert "pass" not in text
        assert shown in text
    assert cfg.durable == durable  # the real URL is still what the backend connects with


def test_presets_have_their_documented_values() -> None:
    dev = StoreConfig.development()
    assert (dev.durable, dev.cache, dev.sqlite_synchronous, dev.encryption) == (
        "sqlite:///baileys-store-dev.db",
        "memory://",
        "normal",
        "none",
    )
    prod = StoreConfig.production(
        durable="postgresql://db/x", cache="redis://r", master_keys={1: KEY.hex()}
    )
    assert (prod.encryption, prod.sqlite_synchronous, prod.compression) == (
        "aes-256-gcm",
        "full",
        "zstd",
    )
    assert (prod.durable_outage, prod.leases) == ("buffer", True)
    test = StoreConfig.testing()
    assert (test.durable, test.cache, test.op_timeout) == ("memory://", "memory://", 2.0)
    assert StoreConfig.testing(op_timeout=5).op_timeout == 5


def test_production_refuses_to_run_without_encryption() -> None:
    with pytest.raises(errors.ConfigError, match="master_keys"):
        StoreConfig.production(durable="postgresql://db/x")
    with pytest.raises(errors.ConfigError, match="encryption"):
        StoreConfig.production(durable="postgresql://db/x", encryption="none")
