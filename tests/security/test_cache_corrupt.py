"""A damaged record in a cache tier never fails a read the durable tier can answer (issue 12, 7b).

Before, a blob from L1, the in-process cache or Redis that failed to decode failed the read
although the durable copy was good. Now it is evicted, counted
(``baileys_store_cache_corrupt_evictions_total``) and the durable value served; when the durable
copy is bad too (or the failure is the configuration's, a key missing from the ring) the read
raises and nothing is evicted. In write-behind the durable tier may be behind Redis, so a
damaged Redis record raises rather than serve an older value.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from baileys_store import errors
from baileys_store._model import CredsRecord, KeyWrite
from baileys_store.backends.memory import MemoryCache
from tests.conftest import Backend
from tests.security._forge import HYBRID, K1, K2, Variants

CREDS: dict[str, Any] = {"registrationId": 3}
EVICTED = "baileys_store_cache_corrupt_evictions_total"
GARBAGE = b"\xb5\x09\x00\x00\x00\x00garbage!"  # an unknown format: corrupt on any codec


def evicted(registry: CollectorRegistry) -> float:
    return registry.get_sample_value(EVICTED) or 0.0


@pytest.fixture(params=["memory", "sqlite", "sqlite-encrypted"])
def local(request: pytest.FixtureRequest) -> Backend:
    """Backends with the in-process cache in front of the durable tier."""
    value: Backend = request.getfixturevalue(f"backend_{request.param.replace('-', '_')}")
    return value


async def test_damaged_in_process_cache_entry_is_evicted(local: Backend) -> None:
    v = Variants(local)
    registry = CollectorRegistry()
    async with v.open(registry) as store:
        sess, addr = store.session("s", namespace=v.namespace), v.addr("s")
        await sess.keys.set({"pre-key": {"1": b"one", "2": b"two"}})
        await sess.save_creds(CREDS)
        cache = store.cache
        assert isinstance(cache, MemoryCache)
        await cache.update_keys(addr, [KeyWrite("pre-key", "1", GARBAGE)], token=None)
        assert await sess.keys.get("pre-key", ["1", "2"]) == {"1": b"one", "2": b"two"}
        assert evicted(registry) == 1
        assert (await cache.read_keys(addr, "pre-key", ["1"])).found == {}  # gone, not re-served
        version = await sess.creds_version()
        await cache.put_creds_guarded(addr, CredsRecord(GARBAGE, version), token=None)
        assert await sess.load_versioned_creds() == (CREDS, version)
        assert evicted(registry) == 2
        errors_seen = registry.get_sample_value(
            "baileys_store_codec_errors_total", {"kind": "corrupt"}
        )
        assert errors_seen == 2


async def test_bad_durable_copy_still_raises(local: Backend) -> None:
    v = Variants(local)
    registry = CollectorRegistry()
    async with v.open(registry) as store:
        sess, addr = store.session("s", namespace=v.namespace), v.addr("s")
        await store.durable.write_keys(addr, [KeyWrite("pre-key", "1", GARBAGE)])
        await store.durable.save_creds(addr, GARBAGE)
        with pytest.raises(errors.CorruptDataError):
            await sess.keys.get("pre-key", ["1"])
        with pytest.raises(errors.CorruptDataError):
            await sess.load_creds()
        assert evicted(registry) == 0
        counted = registry.get_sample_value("baileys_store_codec_errors_total", {"kind": "corrupt"})
        assert counted == 2  # one per bad record, not one per tier that held it


async def test_a_key_missing_from_the_ring_evicts_nothing(backend_sqlite: Backend) -> None:
    """DecryptError from the configuration: the durable copy fails the same way; keep it."""
    v = Variants(backend_sqlite, encryption="aes-256-gcm")
    async with v.open(master_keys={1: K1}) as store:
        await store.session("s", namespace=v.namespace).keys.set({"pre-key": {"1": b"one"}})
        blob = (await store.durable.get_keys(v.addr("s"), "pre-key", ["1"]))["1"]
    async with v.open(master_keys={1: K1, 2: K2}):
        pass  # binds key 2, so the ring {2} below opens
    registry = CollectorRegistry()
    async with v.open(registry, master_keys={2: K2}) as store:
        cache = store.cache
        assert isinstance(cache, MemoryCache)
        await cache.update_keys(v.addr("s"), [KeyWrite("pre-key", "1", blob)], token=None)
        with pytest.raises(errors.DecryptError, match="key id 1"):
            await store.session("s", namespace=v.namespace).keys.get("pre-key", ["1"])
        assert evicted(registry) == 0
        assert (await cache.read_keys(v.addr("s"), "pre-key", ["1"])).found == {"1": blob}


@pytest.fixture(params=HYBRID)
def hybrid(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.getfixturevalue(f"backend_{request.param.replace('-', '_')}")
    return value


async def test_damaged_redis_and_l1_entries(hybrid: Backend) -> None:
    v = Variants(hybrid)
    registry = CollectorRegistry()
    async with v.open(registry) as store:
        sess, addr = store.session("s", namespace=v.namespace), v.addr("s")
        await sess.keys.set({"pre-key": {"1": b"one", "2": b"two"}})
        await sess.save_creds(CREDS)
        client, base = store.cache.runner.client, store.cache.runner.base(addr)  # type: ignore[union-attr]
        l1 = store._engine.l1
        assert l1 is not None
        behind = store.config.write_mode == "write-behind"
        # L1 first: a damaged in-process copy, Redis and the durable tier intact.
        await l1.update_keys(addr, [KeyWrite("pre-key", "1", GARBAGE)], token=None)
        if behind:
            with pytest.raises(errors.CorruptDataError):
                await sess.keys.get("pre-key", ["1"])
            l1.forget(addr)
        else:
            assert await sess.keys.get("pre-key", ["1", "2"]) == {"1": b"one", "2": b"two"}
            assert evicted(registry) == 1
        # Then Redis (L1 no longer holds the record); the reads re-warm what the drop took.
        l1.forget(addr)
        assert await sess.keys.get("pre-key", ["1", "2"]) == {"1": b"one", "2": b"two"}
        assert await sess.load_creds() == CREDS
        l1.forget(addr)
        await client.hset(base + "k:pre-key", "2", GARBAGE)
        await client.hset(base + "m", "creds", GARBAGE)
        if behind:  # Redis is the primary: never fall back to an older durable value
            with pytest.raises(errors.CorruptDataError):
                await sess.keys.get("pre-key", ["2"])
            with pytest.raises(errors.CorruptDataError):
                await sess.load_creds()
            assert evicted(registry) == 0
            return
        assert await sess.keys.get("pre-key", ["2"]) == {"2": b"two"}
        assert await client.hget(base + "k:pre-key", "2") is None
        assert evicted(registry) == 2
        assert await sess.load_creds() == CREDS  # the drop above took the damaged creds too
        await client.hset(base + "m", "creds", GARBAGE)
        l1.forget(addr)
        assert await sess.load_creds() == CREDS
        assert evicted(registry) == 3
