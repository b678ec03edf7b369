"""The hybrid store on a real Redis over SQLite: leases, fencing, guarded fills, the outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.redis import RedisCache
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.codec import key_aad
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.integration._backend_cases import opened
from tests.integration._flaky import FlakySQLite

SID = "5511@s.whatsapp.net"
ADDR = SessionAddr("default", SID)


@pytest.fixture
def make(redis_server: RedisServer, tmp_path: Path) -> Callable[..., AuthStore]:
    """Stores ("processes") sharing one Redis prefix and one SQLite file."""
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    db = f"sqlite:///{tmp_path / 'store.db'}"

    def build(**cfg: Any) -> AuthStore:
        return AuthStore(StoreConfig(durable=db, cache=cache, op_timeout=5.0, **cfg))

    return build


def flaky_store(
    server: RedisServer, tmp_path: Path, **cfg: Any
) -> tuple[AuthStore, FlakySQLite, StoreConfig]:
    """A store over a SQLite that fails on demand, with a Redis cache; the worker off unless
    ``outbox_worker=True``."""
    cache = with_query(server.url, prefix=unique_prefix(), ttl="600")
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'flaky.db'}", cache=cache, **{"outbox_worker": False, **cfg}
    )
    durable = FlakySQLite(tmp_path / "flaky.db")
    return AuthStore(config, durable=durable, cache=make_cache(config)), durable, config


async def durable_value(store: AuthStore, key_type: str, key_id: str) -> object:
    """What the durable tier holds for one key (decoded), bypassing every cache."""
    blob = (await store.durable.get_keys(ADDR, key_type, [key_id])).get(key_id)
    return None if blob is None else store.codec.decode(blob, key_aad(*ADDR, key_type, key_id))


def redis_cache(store: AuthStore) -> RedisCache:
    assert isinstance(store.cache, RedisCache)
    return store.cache


async def test_second_process_cannot_write_a_leased_session(
    make: Callable[..., AuthStore],
) -> None:
    async with opened(make()) as a, opened(make()) as b:
        await a.session(SID).keys.set({"session": {"1.0": b"a"}})
        with pytest.raises(errors.LeaseHeldError):
            await b.session(SID).keys.set({"session": {"1.0": b"b"}})
        # B still reads the current value (from the durable tier: it is not the owner).
        assert await b.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"a"}
        assert await a.release(SID)
        await b.session(SID).keys.set({"session": {"1.0": b"b"}})
        with pytest.raises(errors.LeaseHeldError):
            await a.session(SID).keys.set({"session": {"1.0": b"stale"}})
        assert await a.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"b"}


async def test_expired_holder_is_fenced_and_told(make: Callable[..., AuthStore]) -> None:
    async with opened(make(lease_ttl=1)) as a, opened(make(lease_ttl=1)) as b:
        await a.session(SID).keys.set({"session": {"1.0": b"a1"}})
        leases = a._engine.leases
        assert leases is not None
        await leases.stop_renewing()  # a long pause: no renewals, the lease expires
        await asyncio.sleep(1.3)
        await b.session(SID).keys.set({"session": {"1.0": b"b1"}})
        # A still believes it holds the lease: the durable tier fences its token.
        with pytest.raises(errors.FencedError):
            await a.session(SID).keys.set({"session": {"1.0": b"a2"}})
        with pytest.raises(errors.LeaseLostError):  # told once...
            await a.session(SID).keys.set({"session": {"1.0": b"a3"}})
        with pytest.raises(errors.LeaseHeldError):  # ...then it is just another process
            await a.session(SID).keys.set({"session": {"1.0": b"a3"}})
        assert await b.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"b1"}
        assert await a.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"b1"}


async def test_fill_prepared_before_a_write_is_skipped(make: Callable[..., AuthStore]) -> None:
    async with opened(make(l1_max_entries=0)) as store:
        cache = redis_cache(store)
        await store.session(SID).keys.set({"pre-key": {"1": b"new"}})
        lease = store._engine.leases.held[ADDR]  # type: ignore[union-attr]
        await cache.drop(ADDR, token=lease.token)
        stamp = (await cache.read_keys(ADDR, "pre-key", ["1"])).stamp
        await store.session(SID).keys.set({"pre-key": {"1": b"newer"}})
        old = [KeyWrite("pre-key", "1", b"new")]
        assert not await cache.fill_keys(ADDR, old, stamp=stamp, token=lease.token)
        got = await cache.read_keys(ADDR, "pre-key", ["1"])
        assert got.found.get("1", b"newer") != b"new"
        with pytest.raises(errors.LeaseLostError):
            await cache.fill_keys(ADDR, old, stamp=got.stamp, token=lease.token - 1)


async def test_new_holder_drops_what_the_old_one_cached(make: Callable[..., AuthStore]) -> None:
    async with opened(make()) as a:
        await a.session(SID).keys.set({"session": {"1.0": b"v1"}})
        assert (await redis_cache(a).read_keys(ADDR, "session", ["1.0"])).found
        assert await a.release(SID)
    async with opened(make()) as b:
        cache = redis_cache(b)
        await b.session(SID).keys.get("session", ["x"])  # acquires the lease
        # the old holder's entries are gone (they may have been stale), the durable value stays
        assert (await cache.read_keys(ADDR, "session", ["1.0"])).found == {}
        assert await b.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"v1"}


async def test_write_behind_serves_from_cache_then_drains(make: Callable[..., AuthStore]) -> None:
    async with opened(make(write_mode="write-behind", outbox_worker=False)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"s1", "2.0": b"s2"}, "pre-key": {"7": b"p"}})
        await keys.set({"session": {"2.0": None}})  # a tombstone until drained
        version = await store.session(SID).save_creds({"registrationId": 7})
        durable: SQLiteDurable = store.durable  # type: ignore[assignment]
        assert await durable.get_keys(ADDR, "session", ["1.0"]) == {}  # not drained yet
        assert await keys.get("session", ["1.0", "2.0"]) == {"1.0": b"s1"}
        assert await store.session(SID).creds_version() == version
        assert await store.drain_outbox() == 3
        assert set(await durable.get_keys(ADDR, "session", ["1.0", "2.0"])) == {"1.0"}
        record = await durable.load_creds(ADDR)
        assert record is not None
        assert record.version == version
        client = redis_cache(store).runner.client
        base = redis_cache(store).runner.base(ADDR)
        assert await client.pttl(base + "k:session") > 0  # expires again once drained
        assert await client.hget(base + "k:session", "2.0") is None  # tombstone removed
        assert await keys.get("session", ["1.0", "2.0"]) == {"1.0": b"s1"}


async def test_write_behind_survives_a_script_flush(make: Callable[..., AuthStore]) -> None:
    """The write-behind scripts run as a hand-queued EVALSHA (no SCRIPT EXISTS per write): a
    server that lost its scripts (restart, SCRIPT FLUSH) answers NOSCRIPT, and the write loads
    the script and runs again, applied once."""
    async with opened(make(write_mode="write-behind", outbox_worker=False)) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"before"}})
        await redis_cache(store).runner.client.script_flush()
        await keys.set({"session": {"1.0": b"after", "2.0": b"new"}})
        version = await store.session(SID).save_creds({"registrationId": 7})  # wb_creds too
        assert await keys.get("session", ["1.0", "2.0"]) == {"1.0": b"after", "2.0": b"new"}
        assert await store.drain_outbox() == 3  # every write appended exactly once
        assert await durable_value(store, "session", "1.0") == b"after"
        assert await store.session(SID).creds_version() == version


async def test_write_behind_redelivery_is_applied_once(make: Callable[..., AuthStore]) -> None:
    async with opened(
        make(write_mode="write-behind", outbox_worker=False, outbox_claim_timeout=1)
    ) as store:
        keys = store.session(SID).keys
        for n in range(5):
            await keys.set({"sender-key": {"g::u::0": bytes([n])}})
        cache = redis_cache(store)
        # a worker that dies holding the claim
        dead = await cache.outbox.claim(ADDR, "dead-worker", 1000, 10)
        assert dead is not None
        assert len(dead.entries) == 5
        start = time.monotonic()
        assert await store.drain_outbox() == 5  # once the dead worker's claim lapsed
        assert time.monotonic() - start >= 0.9
        durable: SQLiteDurable = store.durable  # type: ignore[assignment]
        blob = (await durable.get_keys(ADDR, "sender-key", ["g::u::0"]))["g::u::0"]
        assert store.codec.decode(blob, key_aad(*ADDR, "sender-key", "g::u::0")) == bytes([4])
        # the dead worker wakes up and applies its old batch: the sequence guard skips it
        assert not await durable.apply_batch(
            ADDR, [KeyWrite("sender-key", "g::u::0", b"\0")], None, seq=dead.entries[-1].seq
        )
        assert await cache.outbox.ack(ADDR, "dead-worker", 5, dead.entries[-1].seq) is None


async def test_poison_entry_goes_to_dead_letters_outage_does_not(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, _ = flaky_store(
        redis_server, tmp_path, write_mode="write-behind", outbox_max_attempts=3
    )
    async with opened(store):
        await store.session(SID).keys.set({"session": {"1.0": b"x"}})
        durable.fail_with = errors.UnavailableError("durable down")
        for _ in range(5):
            with pytest.raises(errors.UnavailableError):
                await store.drain_outbox()
        assert await redis_cache(store).outbox.dead_letters(ADDR) == []  # an outage never poisons
        durable.fail_with = errors.CorruptDataError("rejected")
        for _ in range(2):  # drain_outbox is a barrier: it says the entry is not applied
            with pytest.raises(errors.UnavailableError):
                await store.drain_outbox()
        await store.drain_outbox()  # the third failure moves it to the dead letters
        letters = await redis_cache(store).outbox.dead_letters(ADDR)
        assert len(letters) == 1
        assert "CorruptDataError" in letters[0].error
        assert [(w.type, w.id) for w in letters[0].entry.writes] == [("session", "1.0")]


async def test_durable_outage_buffers_then_drains(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, _ = flaky_store(redis_server, tmp_path)
    async with opened(store):
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"before"}})
        durable.fail_with = errors.UnavailableError("durable down")
        await keys.set({"session": {"1.0": b"during"}})  # buffered in the outbox: acknowledged
        await keys.set({"pre-key": {"1": b"p"}})
        assert ADDR in store._engine.tiers.behind
        assert await keys.get("session", ["1.0"]) == {"1.0": b"during"}
        with pytest.raises(errors.UnavailableError):  # a miss cannot be served: never "absent"
            await keys.get("session", ["9.9"])
        durable.fail_with = None
        assert await store.drain_outbox() == 2
        assert ADDR not in store._engine.tiers.behind
        assert await durable_value(store, "session", "1.0") == b"during"
        await keys.set({"session": {"1.0": b"after"}})  # write-through again
        assert await durable_value(store, "session", "1.0") == b"after"


async def test_durable_outage_fails_writes_when_configured(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, _ = flaky_store(
        redis_server, tmp_path, durable_outage="fail", outbox_worker=True
    )
    async with opened(store):
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v1"}})
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v1"}
        durable.fail_with = errors.UnavailableError("durable down")
        with pytest.raises(errors.UnavailableError):
            await keys.set({"session": {"1.0": b"v2"}})
        durable.fail_with = None
        # the failed write may have landed: its cached predecessor must not be served
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v1"}


async def test_a_write_landing_after_its_deadline_is_rejected(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A write that timed out (and was buffered) but reaches the durable tier after the newer
    writes were drained must not roll them back: its fence is older than theirs."""
    store, durable, _ = flaky_store(redis_server, tmp_path)
    async with opened(store):
        keys = store.session(SID).keys
        await keys.set({"session": {"1.0": b"v0"}})
        durable.fail_with = errors.UnavailableError("no answer in time")
        await keys.set({"session": {"1.0": b"v1"}})  # times out, buffered, acknowledged
        late_fence = durable.failed_fences[-1]
        durable.fail_with = None
        await keys.set({"session": {"1.0": b"v2"}})  # drains v1's entry, then writes through
        assert await store.drain_outbox() == 0
        with pytest.raises(errors.FencedError):  # the v1 request finally arrives
            await durable.write_keys(
                ADDR, [KeyWrite("session", "1.0", b"v1-late")], fence=late_fence
            )
        assert await durable_value(store, "session", "1.0") == b"v2"
        assert await keys.get("session", ["1.0"]) == {"1.0": b"v2"}


async def test_other_process_reads_buffered_writes_from_the_cache(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A process that does not own the session reads the cache while the owner's outbox holds
    writes the durable tier has not got yet (the owner buffered them through an outage)."""
    owner, durable, config = flaky_store(redis_server, tmp_path)
    async with opened(owner), opened(AuthStore(config)) as other:
        await owner.session(SID).keys.set({"session": {"1.0": b"v1"}})
        durable.fail_with = errors.UnavailableError("down")
        await owner.session(SID).keys.set({"session": {"1.0": b"v2"}})  # buffered
        durable.fail_with = None  # back, but not drained yet
        assert await other.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"v2"}
        assert await owner.drain_outbox() == 1
        assert await other.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"v2"}


async def test_many_first_uses_at_once_take_one_lease(make: Callable[..., AuthStore]) -> None:
    async with opened(make()) as store:
        sess = store.session(SID)
        await asyncio.gather(
            *(sess.keys.set({"session": {f"{n}.0": b"x"}}) for n in range(20)),
            *(sess.keys.get("session", ["0.0"]) for _ in range(20)),
        )
        assert store._engine.leases is not None
        assert store._engine.leases.held[ADDR].token == 1  # acquired once, never bumped
        assert store._engine.leases._acquiring == {}


async def test_write_through_resumes_by_itself_after_an_outage(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Buffered writes must not turn write-through into write-behind for good: the first write
    after the durable tier is back drains the backlog, then goes through."""
    store, durable, _ = flaky_store(redis_server, tmp_path)
    async with opened(store):
        keys = store.session(SID).keys
        durable.fail_with = errors.UnavailableError("down")
        for n in range(5):
            await keys.set({"session": {"1.0": str(n).encode()}})
        assert ADDR in store._engine.tiers.behind
        durable.fail_with = None
        await keys.set({"session": {"1.0": b"after"}, "pre-key": {"9": b"p"}})
        assert ADDR not in store._engine.tiers.behind
        assert await durable_value(store, "session", "1.0") == b"after"
        assert await durable_value(store, "pre-key", "9") == b"p"


async def test_purge_skips_a_session_another_process_holds(
    make: Callable[..., AuthStore],
) -> None:
    async with opened(make()) as live, opened(make()) as admin:
        await live.session(SID).keys.set({"session": {"1.0": b"x"}})
        await asyncio.sleep(0.6)
        report = await admin.purge(0.5)
        assert (report.matched, report.deleted, report.in_use) == (1, 0, 1)
        assert await live.session(SID).keys.get("session", ["1.0"]) == {"1.0": b"x"}


async def test_a_write_while_the_lease_is_not_fresh_leaves_nothing_stale_in_l1(
    make: Callable[..., AuthStore],
) -> None:
    async with opened(make()) as store:
        keys = store.session(SID).keys
        await keys.set({"session": {"x": b"v1"}})
        assert await keys.get("session", ["x"]) == {"x": b"v1"}  # L1 holds it now
        leases = store._engine.leases
        assert leases is not None
        lease = leases.held[ADDR]
        # An event loop that fell behind: the lease was not renewed lately, L1 is bypassed.
        kept, lease.valid_until = lease.valid_until, 0.0
        await keys.set({"session": {"x": b"v2"}})
        lease.valid_until = kept  # renewed again: L1 is used again
        assert await keys.get("session", ["x"]) == {"x": b"v2"}


async def test_release_then_takeover_leaves_nothing_stale_in_l1(
    make: Callable[..., AuthStore],
) -> None:
    async with opened(make()) as a, opened(make()) as b:
        await a.session(SID).keys.set({"session": {"x": b"a"}})
        assert await a.session(SID).keys.get("session", ["x"]) == {"x": b"a"}  # in A's L1
        assert await a.release(SID)
        await b.session(SID).keys.set({"session": {"x": b"b"}})
        assert await b.release(SID)
        await a.session(SID).keys.set({"session": {"y": b"a"}})  # A holds the lease again
        assert await a.session(SID).keys.get("session", ["x"]) == {"x": b"b"}


async def test_a_redis_prefix_belongs_to_one_durable_tier(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # Two databases under one prefix would serve each other's records and drain each other's
    # outboxes into the wrong database: the second store refuses to open.
    cache = with_query(redis_server.url, prefix=unique_prefix())
    first = AuthStore(StoreConfig(durable=f"sqlite:///{tmp_path / 'a.db'}", cache=cache))
    async with opened(first):
        again = AuthStore(
            StoreConfig(durable=f"sqlite:///{tmp_path / 'a.db'}", cache=cache, lease="on")
        )
        async with opened(again):  # the same database from another store: fine
            pass
        other = AuthStore(StoreConfig(durable=f"sqlite:///{tmp_path / 'b.db'}", cache=cache))
        with pytest.raises(errors.ConfigError, match="belongs to another durable tier"):
            await other.open()
