"""A stale lease holder cannot resurrect a deleted session, nor write one it never wrote.

Issue 12, item 3, through the public API on every configuration that leases sessions. Store A
("process" A) holds a session's lease and pauses past ``lease_ttl`` (its renewals stop); store
B takes the lease, and deletes the session or only reads it; then A resumes and writes keys and
creds. Every such write must raise :class:`FencedError` (or its subclass ``LeaseLostError``)
and leave nothing anywhere: a fresh store, the durable tier read directly and the Redis cache
read directly hold none of it. In write-through, where the cache is updated after the durable
tier, that proves a write the cache would refuse was never applied durably (the fence is checked
in the durable transaction, against the tombstone the new holder's barrier left).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.redis import RedisCache
from baileys_store.backends.sqlite import SQLiteDurable
from tests.creds_data import node_creds
from tests.integration._backend_cases import opened

pytestmark = pytest.mark.timeout(120)

# name -> (durable, cache, write mode); every one of them leases sessions.
CONFIGS: dict[str, tuple[str, str | None, str]] = {
    # Two stores on one SQLite file must run without an in-process cache (sqlite.py refuses).
    "sqlite-lease": ("sqlite", None, "write-through"),
    "postgres-lease": ("postgres", None, "write-through"),
    "hybrid-sqlite": ("sqlite", "redis", "write-through"),
    "hybrid-postgres": ("postgres", "redis", "write-through"),
    "hybrid-sqlite-wb": ("sqlite", "redis", "write-behind"),
    "hybrid-postgres-wb": ("postgres", "redis", "write-behind"),
}
TTL = 1.0  # the smallest lease_ttl the config allows
PAUSE = TTL + 0.4  # past the TTL: the lease is free for anyone
OLD_IDS = {"session": ["1.0"], "pre-key": ["1"]}
STALE_IDS = {"session": ["1.0", "9.0"], "pre-key": ["1", "9"]}


@pytest.fixture(params=list(CONFIGS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], AuthStore]:
    """Stores ("processes") sharing one durable tier (and one Redis prefix, for the hybrids)."""
    durable_kind, cache_kind, mode = CONFIGS[request.param]
    if durable_kind == "postgres":
        durable = request.getfixturevalue("postgres_db").dsn
    else:
        durable = f"sqlite:///{tmp_path / 'store.db'}"
    cache: str | None = None
    if cache_kind == "redis":
        from tests._services.redis import unique_prefix, with_query  # noqa: PLC0415

        server = request.getfixturevalue("redis_server")
        cache = with_query(server.url, prefix=unique_prefix(), ttl="600")
    config = StoreConfig(
        durable=durable, cache=cache, write_mode=mode, lease="on", lease_ttl=TTL, op_timeout=5.0
    )
    return lambda: AuthStore(config)


def fresh_addr() -> SessionAddr:
    # One PostgreSQL database serves the whole run: a namespace of its own per test.
    return SessionAddr(f"stale-{uuid.uuid4().hex[:8]}", "5511999887766@s.whatsapp.net")


async def pause(store: AuthStore) -> None:
    """Store A stops renewing (a long GC pause, a frozen VM) until its lease has expired."""
    leases = store._engine.leases
    assert leases is not None
    await leases.stop_renewing()
    await asyncio.sleep(PAUSE)


def stale_writes(store: AuthStore, addr: SessionAddr) -> dict[str, Callable[[], Awaitable[Any]]]:
    session = store.session(addr.session_id, namespace=addr.namespace)
    blobs = {t: {i: b"stale-" + i.encode() for i in ids} for t, ids in STALE_IDS.items()}
    return {
        "keys": lambda: session.keys.set(blobs),
        "creds": lambda: session.save_creds(node_creds(registrationId=666)),
        "clear": session.keys.clear,
    }


async def assert_refused(store: AuthStore, addr: SessionAddr, order: tuple[str, ...]) -> None:
    """Each stale write raises FencedError (LeaseLostError once A knows it lost the lease)."""
    writes = stale_writes(store, addr)
    for name in order:
        with pytest.raises(errors.FencedError):
            await writes[name]()


async def assert_nothing_anywhere(make: Callable[[], AuthStore], addr: SessionAddr) -> None:
    """A fresh store, the durable tier and the Redis cache hold nothing of the session."""
    async with opened(make()) as fresh:
        await fresh.drain_outbox()  # write-behind: whatever an outbox held is applied now
        session = fresh.session(addr.session_id, namespace=addr.namespace)
        assert await session.load_creds() is None
        for key_type, ids in STALE_IDS.items():
            assert await session.keys.get(key_type, ids) == {}, key_type
            assert await fresh.durable.get_keys(addr, key_type, ids) == {}, key_type
        assert await fresh.durable.load_creds(addr) is None
        assert [i async for i in fresh.list_sessions(addr.namespace)] == []
        if isinstance(fresh.cache, RedisCache):
            for key_type, ids in STALE_IDS.items():
                assert (await fresh.cache.read_keys(addr, key_type, ids)).found == {}, key_type
            assert (await fresh.cache.read_creds(addr)).record is None


@pytest.mark.parametrize("order", [("keys", "creds"), ("creds", "keys"), ("clear", "keys")])
async def test_stale_holder_cannot_resurrect_a_deleted_session(
    make: Callable[[], AuthStore], order: tuple[str, ...]
) -> None:
    addr = fresh_addr()
    async with opened(make()) as a, opened(make()) as b:
        mine = a.session(addr.session_id, namespace=addr.namespace)
        await mine.keys.set({t: {i: b"old" for i in ids} for t, ids in OLD_IDS.items()})
        await mine.save_creds(node_creds())
        await a.drain_outbox()
        await pause(a)
        # B takes the lease (its barrier raises the durable fence) and deletes the session.
        assert await b.session(addr.session_id, namespace=addr.namespace).delete()
        await assert_refused(a, addr, order)
        # A's own view: nothing of its refused writes either (no cache kept them).
        assert await mine.keys.get("session", STALE_IDS["session"]) == {}
        assert await mine.load_creds() is None
    await assert_nothing_anywhere(make, addr)


@pytest.mark.parametrize("order", [("keys", "creds"), ("creds", "keys")])
async def test_stale_holder_cannot_write_a_session_never_written(
    make: Callable[[], AuthStore], order: tuple[str, ...]
) -> None:
    """No row exists: the new holder's barrier must still fence the old holder out."""
    addr = fresh_addr()
    async with opened(make()) as a, opened(make()) as b:
        assert await a.session(addr.session_id, namespace=addr.namespace).load_creds() is None
        assert a._engine.leases is not None
        assert addr in a._engine.leases.held  # A's read took the lease
        await pause(a)
        assert await b.session(addr.session_id, namespace=addr.namespace).load_creds() is None
        assert b._engine.leases is not None
        assert addr in b._engine.leases.held  # B's read took it over: barrier on no row
        await assert_refused(a, addr, order)
    await assert_nothing_anywhere(make, addr)


async def test_new_holder_writes_after_the_stale_holder_was_refused(
    make: Callable[[], AuthStore],
) -> None:
    """The tombstone only stops stale tokens: the new holder starts the session again."""
    addr = fresh_addr()
    async with opened(make()) as a, opened(make()) as b:
        mine = a.session(addr.session_id, namespace=addr.namespace)
        await mine.keys.set({"session": {"1.0": b"old"}})
        await a.drain_outbox()
        await pause(a)
        theirs = b.session(addr.session_id, namespace=addr.namespace)
        assert await theirs.delete()
        await assert_refused(a, addr, ("keys",))
        await theirs.keys.set({"session": {"1.0": b"new"}})
        await theirs.save_creds(node_creds(registrationId=7))
        await b.drain_outbox()
    async with opened(make()) as fresh:
        again = fresh.session(addr.session_id, namespace=addr.namespace)
        assert await again.keys.get("session", ["1.0", "9.0"]) == {"1.0": b"new"}
        creds = await again.load_creds()
        assert creds is not None
        assert creds["registrationId"] == 7
        assert set(await fresh.durable.get_keys(addr, "session", ["1.0", "9.0"])) == {"1.0"}


# -- the residual window: a new holder whose durable barrier was deferred --------------------


class BarrierDown(SQLiteDurable):
    """A SQLite durable tier whose ``advance_fence`` is unavailable while ``down`` is set."""

    down = False

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        if self.down:
            raise errors.UnavailableError("durable tier down (test)")
        await super().advance_fence(addr, token)


def hybrid_pair(
    redis_url: str, tmp_path: Path
) -> tuple[Callable[[], AuthStore], Callable[[], tuple[AuthStore, BarrierDown]]]:
    """Store builders over one SQLite file and one Redis prefix; the second one's barrier fails."""
    from tests._services.redis import unique_prefix, with_query  # noqa: PLC0415

    path = tmp_path / "store.db"
    cache = with_query(redis_url, prefix=unique_prefix(), ttl="600")
    config = StoreConfig(durable=f"sqlite:///{path}", cache=cache, lease_ttl=TTL, op_timeout=5.0)

    def flaky() -> tuple[AuthStore, BarrierDown]:
        durable = BarrierDown(path)
        return AuthStore(config, durable=durable, cache=make_cache(config)), durable

    return lambda: AuthStore(config), flaky


async def test_a_deferred_barrier_is_retried_at_the_next_renewal(
    redis_server: Any, tmp_path: Path
) -> None:
    """B takes the lease while the durable tier is down, and then only reads: its barrier is
    recorded by its next renewal once the tier is back, and from then on A is refused durably
    (before this, A's write-through write landed durably and only the cache refused it)."""
    make_plain, make_flaky = hybrid_pair(redis_server.url, tmp_path)
    addr = fresh_addr()
    b, durable = make_flaky()
    async with opened(make_plain()) as a, opened(b):
        assert await a.session(addr.session_id, namespace=addr.namespace).load_creds() is None
        await pause(a)
        durable.down = True
        assert await b.session(addr.session_id, namespace=addr.namespace).load_creds() is None
        leases = b._engine.leases
        assert leases is not None
        assert not leases.held[addr].barrier  # taken, barrier deferred
        durable.down = False
        await asyncio.sleep(TTL / 3 + 0.3)  # one renewal round
        assert leases.held[addr].barrier
        await assert_refused(a, addr, ("keys", "creds"))
    await assert_nothing_anywhere(make_plain, addr)


async def test_a_retried_barrier_never_fences_the_new_holders_own_writes(
    redis_server: Any, tmp_path: Path
) -> None:
    make_plain, make_flaky = hybrid_pair(redis_server.url, tmp_path)
    addr = fresh_addr()
    b, durable = make_flaky()
    async with opened(b):
        mine = b.session(addr.session_id, namespace=addr.namespace)
        durable.down = True
        await mine.keys.set({"session": {"1.0": b"b1"}})  # lands with the term's first fence
        durable.down = False
        leases = b._engine.leases
        assert leases is not None
        assert not leases.held[addr].barrier
        await asyncio.sleep(TTL / 3 + 0.3)  # the retried barrier is below that fence
        lease = leases.held[addr]
        assert (lease.barrier, lease.lost) == (True, False)
        await mine.keys.set({"session": {"1.0": b"b2"}})
    async with opened(make_plain()) as fresh:
        got = await fresh.session(addr.session_id, namespace=addr.namespace).keys.get(
            "session", ["1.0"]
        )
        assert got == {"1.0": b"b2"}
