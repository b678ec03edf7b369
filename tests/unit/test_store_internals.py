"""AuthStore internals under failure and racing: cache eviction, generation guard, timeouts.

The durable tier here is :class:`MemoryDurable` with hooks (pause points, injected errors), so
each interleaving is built deterministically with :class:`asyncio.Event`; the SQLite tests use
the real file.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import CredsRecord, KeyWrite, SessionAddr
from baileys_store.backends.memory import MemoryCache, MemoryDurable
from baileys_store.codec import key_aad
from baileys_store.contracts import CachedKeys
from tests.contract.test_concurrency import Workload
from tests.contract.test_creds import node_creds

ADDR = SessionAddr("default", "s1")


class Pause:
    """A point where a fake stops: sets ``reached``, then waits for ``go``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.go.wait()


class HookedDurable(MemoryDurable):
    """MemoryDurable with pause points and injected failures."""

    cancels_promptly = False  # it hangs like a server may: the guard must abandon its calls

    def __init__(self) -> None:
        super().__init__()
        self.read_pause: Pause | None = None  # after reading, before returning
        self.write_pause: Pause | None = None  # after applying, before returning
        self.fail_after_write: Exception | None = None  # applied, then this error
        self.read_error: Exception | None = None
        self.hang = False
        self.key_reads = 0

    async def _read_hooks(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.read_error is not None:
            raise self.read_error
        if self.read_pause is not None:
            await self.read_pause()

    async def _write_hooks(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.write_pause is not None:
            await self.write_pause()
        if self.fail_after_write is not None:
            raise self.fail_after_write

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        self.key_reads += 1
        found = await super().get_keys(addr, key_type, ids)
        await self._read_hooks()
        return found

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        record = await super().load_creds(addr)
        await self._read_hooks()
        return record

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        await super().write_keys(addr, writes, fence=fence)
        await self._write_hooks()

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        version = await super().save_creds(
            addr, blob, expected_version=expected_version, fence=fence
        )
        await self._write_hooks()
        return version


class FailingCache(MemoryCache):
    """MemoryCache whose next ``fail_puts`` updates raise before changing anything."""

    in_process = False  # it fails and hangs like a remote cache: guard its calls

    def __init__(self) -> None:
        super().__init__()
        self.fail_puts = 0
        self.hang = False

    async def read_keys(self, addr: SessionAddr, key_type: str, ids: Sequence[str]) -> CachedKeys:
        if self.hang:
            await asyncio.Event().wait()
        return await super().read_keys(addr, key_type, ids)

    def _fail(self) -> None:
        if self.fail_puts:
            self.fail_puts -= 1
            raise errors.UnavailableError("cache down")

    async def fill_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, stamp: int, token: int | None
    ) -> bool:
        self._fail()
        return await super().fill_keys(addr, writes, stamp=stamp, token=token)

    async def update_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, token: int | None
    ) -> None:
        self._fail()
        await super().update_keys(addr, writes, token=token)


async def cached(store: AuthStore, key_type: str, key_id: str) -> object:
    """The decoded value the cache holds for one key of ``ADDR`` (``None``: not cached)."""
    assert store.cache is not None
    blob = (await store.cache.read_keys(ADDR, key_type, [key_id])).found.get(key_id)
    return None if blob is None else store.codec.decode(blob, key_aad(*ADDR, key_type, key_id))


@pytest.fixture
def durable() -> HookedDurable:
    return HookedDurable()


@pytest.fixture
def cache() -> FailingCache:
    return FailingCache()


@pytest.fixture
async def store(durable: HookedDurable, cache: FailingCache) -> AsyncIterator[AuthStore]:
    config = StoreConfig(durable="memory://", op_timeout=0.2)
    opened = AuthStore(config, durable=durable, cache=cache)
    await opened.open()
    yield opened
    await opened.close()


async def test_failed_write_that_applied_leaves_no_stale_cache(
    store: AuthStore, durable: HookedDurable
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"v1", "b": b"v1"}})
    assert await keys.get("session", ["a", "b"]) == {"a": b"v1", "b": b"v1"}  # now cached
    durable.fail_after_write = errors.UnavailableError("lost the reply")
    with pytest.raises(errors.UnavailableError):
        await keys.set({"session": {"a": b"v2", "b": None}})
    durable.fail_after_write = None
    assert await keys.get("session", ["a", "b"]) == {"a": b"v2"}
    assert len(store._engine.tiers.states) == 0


async def test_failed_creds_save_that_applied_leaves_no_stale_cache(
    store: AuthStore, durable: HookedDurable
) -> None:
    sess = store.session("s1")
    await sess.save_creds(node_creds())
    assert await sess.creds_version() == 1  # cached
    durable.fail_after_write = errors.UnavailableError("lost the reply")
    newer = node_creds()
    with pytest.raises(errors.UnavailableError):
        await sess.save_creds(newer)
    durable.fail_after_write = None
    assert await sess.creds_version() == 2
    assert await sess.load_creds() == newer


async def test_cancelled_write_that_applied_leaves_no_stale_cache(
    store: AuthStore, durable: HookedDurable
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"v1"}})
    durable.write_pause = Pause()
    task = asyncio.create_task(keys.set({"session": {"a": b"v2"}}))
    await durable.write_pause.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    durable.write_pause = None
    assert await keys.get("session", ["a"]) == {"a": b"v2"}
    assert len(store._engine.tiers.states) == 0


async def test_slow_read_racing_a_write_does_not_fill_the_cache(
    store: AuthStore, durable: HookedDurable, cache: FailingCache
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"v1"}})
    await cache.drop(ADDR, token=None)  # the next read goes to the durable tier
    pause = durable.read_pause = Pause()
    reader = asyncio.create_task(keys.get("session", ["a"]))
    await pause.reached.wait()  # the reader holds v1 from the durable tier
    durable.read_pause = None
    await keys.set({"session": {"a": b"v2"}})  # a whole write lands meanwhile
    pause.go.set()
    assert await reader == {"a": b"v1"}  # concurrent with the write: either value is fine
    assert await cached(store, "session", "a") == b"v2"  # v1 was not cached
    assert await keys.get("session", ["a"]) == {"a": b"v2"}


async def test_slow_creds_read_racing_a_save_does_not_fill_the_cache(
    store: AuthStore, durable: HookedDurable, cache: FailingCache
) -> None:
    sess = store.session("s1")
    await sess.save_creds(node_creds())
    await cache.drop(ADDR, token=None)
    pause = durable.read_pause = Pause()
    reader = asyncio.create_task(sess.creds_version())
    await pause.reached.wait()
    durable.read_pause = None
    assert await sess.save_creds(node_creds(), expected_version=1) == 2
    pause.go.set()
    assert await reader == 1
    record = (await cache.read_creds(ADDR)).record
    assert record is not None
    assert record.version == 2
    assert await sess.creds_version() == 2


async def test_read_during_a_write_in_flight_never_sees_half_of_it(
    store: AuthStore, durable: HookedDurable
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"s0", "b": b"other"}, "identity-key": {"a": b"i0"}})
    await keys.set({"session": {"a": None}})  # session a: absent; identity a: cached i0
    pause = durable.write_pause = Pause()
    writer = asyncio.create_task(keys.set({"session": {"a": b"s1"}, "identity-key": {"a": b"i1"}}))
    await pause.reached.wait()  # durable tier: s1 + i1; the cache still says i0
    session = await keys.get("session", ["a"])
    identity = await keys.get("identity-key", ["a"])
    assert (session, identity) in (({}, {"a": b"i0"}), ({"a": b"s1"}, {"a": b"i1"}))
    reads = durable.key_reads
    assert await keys.get("session", ["b"]) == {"b": b"other"}  # untouched: from the cache
    assert durable.key_reads == reads
    pause.go.set()
    await writer
    assert await keys.get("session", ["a"]) == {"a": b"s1"}
    assert await keys.get("identity-key", ["a"]) == {"a": b"i1"}


async def test_read_during_a_clear_in_flight_skips_the_cache(
    store: AuthStore, durable: HookedDurable
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"s0"}})
    pause = durable.write_pause = Pause()

    async def clear_then_pause() -> int:
        n = await MemoryDurable.clear_keys(durable, ADDR)
        await pause()
        return n

    durable.clear_keys = lambda addr, *, fence=None: clear_then_pause()  # type: ignore[method-assign]
    clearing = asyncio.create_task(keys.clear())
    await pause.reached.wait()
    assert await keys.get("session", ["a"]) == {}  # the cache still holds s0: not served
    pause.go.set()
    await clearing
    assert await keys.get("session", ["a"]) == {}


async def test_failed_cache_update_is_never_served(store: AuthStore, cache: FailingCache) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"v1"}})
    cache.fail_puts = 1
    with pytest.raises(errors.UnavailableError):
        await keys.set({"session": {"a": b"v2"}})  # durable has v2, the cache kept v1
    assert await cached(store, "session", "a") == b"v1"
    assert await keys.get("session", ["a"]) == {"a": b"v2"}
    assert await keys.get("session", ["a"]) == {"a": b"v2"}
    await keys.set({"session": {"b": b"x"}})  # a later write drops the session's entries
    assert ADDR not in store._engine.tiers.untrusted
    assert await cached(store, "session", "a") is None
    assert await keys.get("session", ["a", "b"]) == {"a": b"v2", "b": b"x"}


async def test_failed_eviction_after_a_failed_write_is_never_served(
    store: AuthStore, durable: HookedDurable, cache: FailingCache
) -> None:
    keys = store.session("s1").keys
    await keys.set({"session": {"a": b"v1"}})
    durable.fail_after_write = errors.UnavailableError("lost the reply")
    cache.fail_puts = 1  # and the eviction fails too
    with pytest.raises(errors.UnavailableError):
        await keys.set({"session": {"a": b"v2"}})
    durable.fail_after_write = None
    assert await keys.get("session", ["a"]) == {"a": b"v2"}


async def test_op_timeout_raises_unavailable(
    store: AuthStore, durable: HookedDurable, cache: FailingCache
) -> None:
    sess = store.session("s1")
    await sess.keys.set({"session": {"a": b"v1"}})
    await cache.drop(ADDR, token=None)
    durable.hang = True
    with pytest.raises(errors.UnavailableError, match="durable"):
        await sess.keys.get("session", ["a"])
    with pytest.raises(errors.UnavailableError, match="durable"):
        await sess.load_creds()
    with pytest.raises(errors.UnavailableError, match="durable"):
        await sess.keys.set({"session": {"a": b"v2"}})
    durable.hang = False
    cache.hang = True  # a cache that does not answer is read around, never waited for twice
    assert await sess.keys.get("session", ["a"]) == {"a": b"v2"}  # the timed-out write applied
    assert store.breakers["cache"].snapshot().failures >= 1
    cache.hang = False
    assert await sess.keys.get("session", ["a"]) == {"a": b"v2"}  # the timed-out write applied
    assert len(store._engine.tiers.states) == 0


async def test_durable_read_error_raises_not_empty(
    store: AuthStore, durable: HookedDurable
) -> None:
    sess = store.session("s1")
    durable.read_error = errors.UnavailableError("connection reset")
    with pytest.raises(errors.UnavailableError):
        await sess.keys.get("session", ["a"])
    with pytest.raises(errors.UnavailableError):
        await sess.load_creds()
    durable.read_error = None
    assert await sess.keys.get("session", ["a"]) == {}


async def test_session_state_is_released_when_idle(
    store: AuthStore, durable: HookedDurable
) -> None:
    sessions = [store.session(f"s{n}") for n in range(20)]
    await asyncio.gather(
        *(s.keys.set({"session": {str(k): b"v"}}) for s in sessions for k in range(5)),
        *(s.keys.get("session", ["0", "1"]) for s in sessions),
        *(s.save_creds(node_creds()) for s in sessions),
    )
    assert len(store._engine.tiers.states) == 0
    pause = durable.write_pause = Pause()
    task = asyncio.create_task(sessions[0].keys.set({"session": {"x": b"v"}}))
    await pause.reached.wait()
    # alive while in use
    assert set(store._engine.tiers.states.by_addr) == {SessionAddr("default", "s0")}
    pause.go.set()
    await task
    assert len(store._engine.tiers.states) == 0


async def test_jittery_durable_tier_keeps_every_transaction_whole() -> None:
    """The concurrency proof over a durable tier that answers after random delays."""

    class Jittery(MemoryDurable):
        async def get_keys(
            self, addr: SessionAddr, key_type: str, ids: Sequence[str]
        ) -> dict[str, bytes]:
            found = await super().get_keys(addr, key_type, ids)
            await asyncio.sleep(random.random() / 5000)
            return found

        async def write_keys(
            self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
        ) -> None:
            await super().write_keys(addr, writes, fence=fence)
            await asyncio.sleep(random.random() / 500)  # applied, not yet acknowledged

    random.seed(7)
    async with AuthStore(StoreConfig(), durable=Jittery(), cache=MemoryCache()) as store:
        work = Workload([store], "default", budget=1500)
        await work.run()
        assert work.violations == []
        assert work.reader_checks > 100
        diff = await work.compare(store.session("s1").keys)
    assert diff == {"lost": [], "rolled_back": [], "resurrected": []}


# -- SQLite: real errors and the file lock ---------------------------------------------------


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


async def test_sqlite_read_error_raises(tmp_path: Path) -> None:
    async with AuthStore(StoreConfig(durable=_url(tmp_path), cache=None)) as store:
        keys = store.session("s1").keys
        await keys.set({"session": {"a": b"v"}})
        with sqlite3.connect(tmp_path / "store.db") as other:
            other.execute("DROP TABLE bs_keys")
        with pytest.raises(errors.UnavailableError, match="no such table"):
            await keys.get("session", ["a"])


async def test_sqlite_corrupt_or_moved_blob_raises(tmp_path: Path) -> None:
    cfg = StoreConfig(
        durable=_url(tmp_path), cache=None, encryption="aes-256-gcm", master_keys={1: "ab" * 32}
    )
    async with AuthStore(cfg) as store:
        keys = store.session("s1").keys
        await keys.set({"session": {"a": b"va", "b": b"vb"}})
        with sqlite3.connect(tmp_path / "store.db") as other:
            # b's blob copied onto a: authentic, but bound to another address
            blob = other.execute("SELECT value FROM bs_keys WHERE id = 'b'").fetchone()[0]
            other.execute("UPDATE bs_keys SET value = ? WHERE id = 'a'", (blob,))
        with pytest.raises(errors.DecryptError):
            await keys.get("session", ["a"])
        with sqlite3.connect(tmp_path / "store.db") as other:
            other.execute("UPDATE bs_keys SET value = x'00ff' WHERE id = 'b'")
        with pytest.raises(errors.CorruptDataError):
            await keys.get("session", ["b"])


async def test_sqlite_with_memory_cache_locks_the_file(tmp_path: Path) -> None:
    cached = StoreConfig(durable=_url(tmp_path))
    shared = StoreConfig(durable=_url(tmp_path), cache=None)
    async with AuthStore(cached) as first:
        await first.session("s1").keys.set({"session": {"a": b"v"}})
        for cfg in (cached, shared):  # neither a cached nor an uncached second store may open
            second = AuthStore(cfg)
            with pytest.raises(errors.UnavailableError, match="cache=none"):
                await second.open()
            with pytest.raises(errors.StoreClosedError):
                await second.session("s1").keys.get("session", ["a"])
    async with AuthStore(cached) as again:  # the failed opens kept no lock behind
        assert await again.session("s1").keys.get("session", ["a"]) == {"a": b"v"}


async def test_sqlite_without_cache_shares_the_file(tmp_path: Path) -> None:
    shared = StoreConfig(durable=_url(tmp_path), cache=None)
    async with AuthStore(shared) as one, AuthStore(shared) as two:
        await one.session("s1").keys.set({"session": {"a": b"v1"}})
        assert await two.session("s1").keys.get("session", ["a"]) == {"a": b"v1"}
        await two.session("s1").keys.set({"session": {"a": b"v2"}})
        assert await one.session("s1").keys.get("session", ["a"]) == {"a": b"v2"}
        assert await one.session("s1").save_creds(node_creds(), expected_version=0) == 1
        with pytest.raises(errors.ConflictError):
            await two.session("s1").save_creds(node_creds(), expected_version=0)
        with pytest.raises(errors.UnavailableError):  # a cached store cannot join them
            await AuthStore(StoreConfig(durable=_url(tmp_path))).open()
