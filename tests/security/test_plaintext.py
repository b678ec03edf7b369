"""An encrypted store never serves a record it did not write (issue 12, item 1).

The attacker can write rows of the durable tier (or Redis fields) but has no master key: a
plaintext blob (its CRC is unkeyed, so anyone can make one) and a blob moved from another
address are refused with DecryptError, on every durable backend and in Redis. And the store
records how it was written, so a process started with encryption off, or with another key under
a reused id, cannot open it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from baileys_store import errors
from baileys_store._model import KeyWrite
from baileys_store.codec import parse_master_key
from baileys_store.tiering._meta import key_fingerprint
from tests.conftest import Backend
from tests.security._forge import (
    ENCRYPTED,
    HYBRID,
    K1,
    K2,
    K3,
    Variants,
    plaintext_creds,
    plaintext_key,
)

CREDS: dict[str, Any] = {"registrationId": 7, "advSecretKey": "real"}


def codec_errors(registry: CollectorRegistry, kind: str) -> float:
    value = registry.get_sample_value("baileys_store_codec_errors_total", {"kind": kind})
    return value or 0.0


async def test_plaintext_records_in_the_durable_tier_are_refused(backend: Backend) -> None:
    v = Variants(backend, **ENCRYPTED)
    registry = CollectorRegistry()
    async with v.open() as store:
        await store.session("real", namespace=v.namespace).keys.set({"pre-key": {"1": b"ok"}})
        forged = v.addr("forged")  # a session only the attacker wrote, so no cache has it
        await store.durable.save_creds(forged, plaintext_creds(forged, {"registrationId": 1}))
        await store.durable.write_keys(
            forged, [KeyWrite("pre-key", "1", plaintext_key(forged, "pre-key", "1", b"evil"))]
        )
    async with v.open(registry) as store:
        sess = store.session("forged", namespace=v.namespace)
        start = time.monotonic()
        with pytest.raises(errors.DecryptError, match="plaintext record in an encrypted store"):
            await sess.keys.get("pre-key", ["1"])
        with pytest.raises(errors.DecryptError, match="plaintext record in an encrypted store"):
            await sess.load_creds()
        assert time.monotonic() - start < 2
        assert codec_errors(registry, "plaintext") == 2
        real = store.session("real", namespace=v.namespace)
        assert await real.keys.get("pre-key", ["1"]) == {"1": b"ok"}
    # The migration switch reads them (and only it).
    async with v.open(allow_plaintext_reads=True) as store:
        sess = store.session("forged", namespace=v.namespace)
        assert await sess.keys.get("pre-key", ["1"]) == {"1": b"evil"}
        assert await sess.load_creds() == {"registrationId": 1}


async def test_blobs_moved_from_another_address_are_refused(backend: Backend) -> None:
    v = Variants(backend, **ENCRYPTED)
    async with v.open() as store:
        real = store.session("real", namespace=v.namespace)
        await real.save_creds(CREDS)
        await real.keys.set({"pre-key": {"1": b"one"}})
        await store.drain_outbox()
        src = v.addr("real")
        blob = (await store.durable.get_keys(src, "pre-key", ["1"]))["1"]
        creds = await store.durable.load_creds(src)
        assert creds is not None
        dst = v.addr("copy")  # another session, and another id of the same session
        await store.durable.write_keys(dst, [KeyWrite("pre-key", "1", blob)])
        await store.durable.write_keys(src, [KeyWrite("pre-key", "2", blob)])
        await store.durable.save_creds(dst, creds.blob)
    async with v.open() as store:
        copy = store.session("copy", namespace=v.namespace)
        with pytest.raises(errors.DecryptError, match="authentication failed"):
            await copy.keys.get("pre-key", ["1"])
        with pytest.raises(errors.DecryptError, match="authentication failed"):
            await copy.load_creds()
        with pytest.raises(errors.DecryptError, match="authentication failed"):
            await store.session("real", namespace=v.namespace).keys.get("pre-key", ["2"])


@pytest.fixture(params=HYBRID)
def hybrid(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.getfixturevalue(f"backend_{request.param.replace('-', '_')}")
    return value


async def test_forged_and_moved_blobs_in_redis_are_never_served(hybrid: Backend) -> None:
    """Write-through: the durable copy is served and the forged field evicted. Write-behind
    (Redis is the primary, the durable tier may be behind): DecryptError."""
    v = Variants(hybrid, **ENCRYPTED, l1_max_entries=0)
    registry = CollectorRegistry()
    async with v.open(registry) as store:
        sess = store.session("s", namespace=v.namespace)
        await sess.keys.set({"pre-key": {"1": b"one", "2": b"two"}})
        await sess.save_creds(CREDS)
        addr, cache = v.addr("s"), store.cache
        client = cache.runner.client  # type: ignore[union-attr]
        base = cache.runner.base(addr)  # type: ignore[union-attr]
        moved = await client.hget(base + "k:pre-key", "2")
        await client.hset(base + "k:pre-key", "1", plaintext_key(addr, "pre-key", "1", b"evil"))
        await client.hset(base + "k:pre-key", "3", moved)  # never written: only the forgery
        forged_creds = plaintext_creds(addr, {"registrationId": 666})
        if store.config.write_mode == "write-behind":
            await client.hset(base + "m", "creds", forged_creds)
            with pytest.raises(errors.DecryptError, match="plaintext record"):
                await sess.keys.get("pre-key", ["1"])
            with pytest.raises(errors.DecryptError, match="authentication failed"):
                await sess.keys.get("pre-key", ["3"])
            with pytest.raises(errors.DecryptError, match="plaintext record"):
                await sess.load_creds()
            return
        assert await sess.keys.get("pre-key", ["1", "2", "3"]) == {"1": b"one", "2": b"two"}
        assert await client.hget(base + "k:pre-key", "1") is None  # evicted
        assert (codec_errors(registry, "plaintext"), codec_errors(registry, "decrypt")) == (1, 1)
        evicted = "baileys_store_cache_corrupt_evictions_total"
        assert registry.get_sample_value(evicted) == 2
        assert await sess.load_creds() == CREDS  # the cache is warm again
        assert await client.hget(base + "m", "creds") is not None
        await client.hset(base + "m", "creds", forged_creds)
        assert await sess.load_creds() == CREDS
        assert codec_errors(registry, "plaintext") == 2
        assert registry.get_sample_value(evicted) == 3
        assert await sess.keys.get("pre-key", ["1", "2"]) == {"1": b"one", "2": b"two"}


# -- what the durable tier records about the store -------------------------------------------


async def test_encrypted_store_refuses_to_open_without_encryption(backend: Backend) -> None:
    v = Variants(backend, **ENCRYPTED)
    async with v.open() as store:
        await store.session("s", namespace=v.namespace).save_creds(CREDS)
    with pytest.raises(errors.ConfigError, match="written with encryption, but encryption is "):
        async with v.open(encryption="none", master_keys={}):
            pass
    async with v.open() as store:  # the refusal changed nothing
        assert await store.session("s", namespace=v.namespace).load_creds() == CREDS


async def test_plaintext_store_opens_encrypted_only_to_migrate(backend: Backend) -> None:
    v = Variants(backend, encryption="none", master_keys={})
    async with v.open() as store:
        await store.session("s", namespace=v.namespace).save_creds(CREDS)
    with pytest.raises(errors.ConfigError, match="allow_plaintext_reads"):
        async with v.open(**ENCRYPTED):
            pass
    async with v.open(**ENCRYPTED, allow_plaintext_reads=True) as store:
        assert await store.session("s", namespace=v.namespace).load_creds() == CREDS
    # From the migration on, the store is encrypted: plaintext settings are refused, and
    # without the switch the remaining plaintext record is too.
    with pytest.raises(errors.ConfigError, match="written with encryption"):
        async with v.open():
            pass
    async with v.open(**ENCRYPTED) as store:
        with pytest.raises(errors.DecryptError, match="plaintext record"):
            await store.session("s", namespace=v.namespace).load_creds()


async def test_master_keys_are_checked_by_fingerprint(backend: Backend) -> None:
    v = Variants(backend, encryption="aes-256-gcm")
    async with v.open(master_keys={1: K1}) as store:
        await store.session("s", namespace=v.namespace).save_creds(CREDS)
    with pytest.raises(errors.ConfigError) as wrong:
        async with v.open(master_keys={1: K2}):
            pass
    message = str(wrong.value)
    assert message.startswith("master key 1 does not match the key this store was written with")
    for secret in (K1, K2):
        raw = parse_master_key(secret, key_id=1)
        for form in (secret, secret.upper(), key_fingerprint(raw), raw.hex()[:16]):
            assert form not in message
    async with v.open(master_keys={1: K1, 2: K2}) as store:  # a new id is recorded
        await store.session("s", namespace=v.namespace).save_creds(CREDS)
    async with v.open(master_keys={2: K2}) as store:  # an old one may go (after rotation)
        assert await store.session("s", namespace=v.namespace).save_creds(CREDS) == 3
    with pytest.raises(errors.ConfigError, match="master key 2 does not match"):
        async with v.open(master_keys={1: K1, 2: K3}):
            pass


async def test_store_meta_is_bound_through_bind_meta(backend: Backend) -> None:
    v = Variants(backend, **ENCRYPTED)
    async with v.open() as store:
        durable = store.durable
        assert await durable.bind_meta("encryption", "none") == "encrypted"
        fp = key_fingerprint(parse_master_key(K1, key_id=1))
        assert await durable.bind_meta("key_fp:1", "x") == fp
        assert len(fp) == 32
        assert fp != parse_master_key(K1, key_id=1).hex()[:32]
