"""Decompression bombs are refused before their output is allocated (issue 12, item 2).

A 64 KiB zstd frame (and a gzip stream of 64 KiB members) expanding to 2 GiB, written straight
into the durable tier or into Redis, raises CorruptDataError within a second and without the
process growing (the decoder stops at ``max_value_bytes``). Large reads decode off the event loop.
"""

from __future__ import annotations

import resource
import secrets
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import KeyWrite
from baileys_store.codec import Codec, Compression, creds_aad, key_aad
from tests.conftest import Backend
from tests.security._forge import (
    HYBRID,
    Variants,
    envelope,
    gzip_bomb,
    snappy_bomb,
    zstd_bomb,
)

GIB2 = 2 << 30
MB = 1 << 20


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[int, bytes]]:
    """Compression id and payload of each bomb (built once: the gzip one takes 0.2 s)."""
    return {
        "zstd": (Compression.ZSTD, zstd_bomb(GIB2)),
        "zstd-unknown-size": (Compression.ZSTD, zstd_bomb(GIB2, declared=None)),
        "zstd-lying-size": (Compression.ZSTD, zstd_bomb(GIB2, declared=4096)),
        "gzip": (Compression.GZIP, gzip_bomb(GIB2)),
        "snappy": (Compression.SNAPPY, snappy_bomb(GIB2)),
    }


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


async def refused_quickly(read: Callable[[], object]) -> None:
    before, start = peak_rss(), time.monotonic()
    with pytest.raises(errors.CorruptDataError):
        await read()  # type: ignore[misc]
    assert time.monotonic() - start < 1.0
    assert peak_rss() - before < 100 * MB


def test_bomb_sizes(bombs: dict[str, tuple[int, bytes]]) -> None:
    assert len(bombs["zstd"][1]) <= 64 * 1024 + 64
    assert len(bombs["gzip"][1]) <= 32 * 66 * 1024  # 32 members of about 64 KiB


@pytest.mark.parametrize("name", ["zstd", "zstd-unknown-size", "zstd-lying-size", "gzip", "snappy"])
def test_codec_refuses_every_bomb(bombs: dict[str, tuple[int, bytes]], name: str) -> None:
    comp, payload = bombs[name]
    aad = b"addr"
    codec = Codec(max_value_bytes=16 * MB)
    before, start = peak_rss(), time.monotonic()
    with pytest.raises(errors.CorruptDataError):
        codec.decode(envelope(payload, aad, comp), aad)
    assert time.monotonic() - start < 1.0
    assert peak_rss() - before < 100 * MB


@pytest.mark.parametrize("algo", ["snappy", "zstd", "gzip"])
def test_values_up_to_the_limit_still_read_back(algo: str) -> None:
    limit = 64 * 1024
    codec = StoreConfig(compression=algo, max_value_bytes=limit).codec()
    value = b"\0" * (limit - 16)  # the payload is a little more: msgpack's bin header
    assert codec.decode(codec.encode(value, b"a"), b"a") == value
    # A reader with a lower limit refuses what a larger one wrote, as too large.
    small = StoreConfig(compression=algo, max_value_bytes=limit // 2).codec()
    with pytest.raises(errors.CorruptDataError, match="over the limit"):
        small.decode(codec.encode(value, b"a"), b"a")


async def test_bombs_in_the_durable_tier(
    backend: Backend, bombs: dict[str, tuple[int, bytes]]
) -> None:
    v = Variants(backend, encryption="none", master_keys={})
    addr = v.addr("bombed")
    registry = CollectorRegistry()
    async with v.open() as store:
        for name, (comp, payload) in bombs.items():
            blob = envelope(payload, key_aad(*addr, "session", name), comp)
            await store.durable.write_keys(addr, [KeyWrite("session", name, blob)])
        await store.durable.save_creds(
            addr, envelope(bombs["zstd"][1], creds_aad(*addr), Compression.ZSTD)
        )
    async with v.open(registry) as store:
        sess = store.session("bombed", namespace=v.namespace)
        for name in bombs:
            await refused_quickly(lambda n=name: sess.keys.get("session", [n]))  # type: ignore[misc]
        await refused_quickly(sess.load_creds)
        await refused_quickly(lambda: sess.keys.get("session", list(bombs)))
    too_large = registry.get_sample_value("baileys_store_codec_errors_total", {"kind": "too_large"})
    assert too_large is not None
    assert too_large >= len(bombs)


@pytest.fixture(params=HYBRID)
def hybrid(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.getfixturevalue(f"backend_{request.param.replace('-', '_')}")
    return value


async def test_bombs_in_redis(hybrid: Backend, bombs: dict[str, tuple[int, bytes]]) -> None:
    """A bomb in Redis is refused in time; write-through then serves the durable copy."""
    v = Variants(hybrid, encryption="none", master_keys={}, l1_max_entries=0)
    async with v.open() as store:
        sess = store.session("s", namespace=v.namespace)
        addr = v.addr("s")
        client, base = store.cache.runner.client, store.cache.runner.base(addr)  # type: ignore[union-attr]
        for name, (comp, payload) in bombs.items():
            await sess.keys.set({"session": {name: b"good"}})
            await client.hset(
                base + "k:session", name, envelope(payload, key_aad(*addr, "session", name), comp)
            )
            before, start = peak_rss(), time.monotonic()
            if store.config.write_mode == "write-behind":
                with pytest.raises(errors.CorruptDataError):  # Redis is the primary
                    await sess.keys.get("session", [name])
            else:
                assert await sess.keys.get("session", [name]) == {name: b"good"}
            assert time.monotonic() - start < 1.0
            assert peak_rss() - before < 100 * MB


async def test_large_reads_decode_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from baileys_store import _session  # noqa: PLC0415

    threads: list[str] = []
    real = _session._decode_all

    def spy(*args: object) -> object:
        threads.append(threading.current_thread().name)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_session, "_decode_all", spy)
    cfg = StoreConfig(durable="memory://", compression="zstd")
    async with AuthStore(cfg) as store:
        keys = store.session("s").keys
        big = {str(i): secrets.token_bytes(4096) for i in range(100)}  # 400 KiB stored
        await keys.set({"session": big, "pre-key": {"z": b"\0" * (4 * MB)}})  # 4 MiB -> ~200 B
        assert await keys.get("session", list(big)) == big
        assert len(threads) == 1  # the large read, in a worker thread
        assert len(await keys.get("session", [str(i) for i in range(10)])) == 10  # 40 KiB
        assert len(threads) == 1  # the small one: the inline fast path, no batch decode
        assert await keys.get("pre-key", ["z"]) == {"z": b"\0" * (4 * MB)}
        main = threading.current_thread().name
        # the large read; the 4 MiB value tried inline (fast path, then the batch decode on the
        # loop), then finished in a worker thread (it expands past the inline bound)
        assert [t == main for t in threads] == [False, True, False]
