"""Fencing on every durable tier: stale tokens, racing holders, fences that outlive a session.

A stale lease holder (paused, then resumed) must not write over a newer holder, resurrect a
deleted session, or write into one a newer holder fenced before writing anything.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite, SessionAddr
from baileys_store.contracts import DurableBackend, LeaseBackend
from tests.conftest import Durable


async def assert_fenced_write(
    durable: DurableBackend, a: SessionAddr, token: int, current: int
) -> None:
    with pytest.raises(errors.FencedError) as info:
        await durable.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=token)
    assert (info.value.token, info.value.current) == (token, current)


async def assert_all_fenced(
    durable: DurableBackend, a: SessionAddr, token: int, current: int
) -> None:
    """Every fenced write with ``token`` raises FencedError naming ``current``; none applies."""
    stale = [KeyWrite("session", "x", b"stale")]
    for write in (
        lambda: durable.write_keys(a, stale, fence=token),
        lambda: durable.save_creds(a, b"stale", fence=token),
        lambda: durable.clear_keys(a, fence=token),
        lambda: durable.delete_session(a, fence=token),
        lambda: durable.advance_fence(a, token),
        lambda: durable.apply_batch(a, stale, CredsRecord(b"stale", 1), seq=10**6, fence=token),
    ):
        with pytest.raises(errors.FencedError) as info:
            await write()
        assert (info.value.token, info.value.current) == (token, current)
    assert await durable.get_keys(a, "session", ["x"]) == {}
    assert await durable.load_creds(a) is None
    listed = [i.session_id async for i in durable.list_sessions(a.namespace)]
    assert a.session_id not in listed


async def test_stale_fence_rejected_for_every_write(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    await db.write_keys(a, [KeyWrite("session", "a", b"1")], fence=5)
    assert await db.save_creds(a, b"creds", expected_version=0, fence=5) == 1
    mixed = [KeyWrite("session", "a", b"2"), KeyWrite("pre-key", "1", b"x")]
    for token, call in (
        (4, lambda: db.write_keys(a, mixed, fence=4)),
        (4, lambda: db.clear_keys(a, fence=4)),
        (4, lambda: db.save_creds(a, b"other", fence=4)),
        (4, lambda: db.save_creds(a, b"other", expected_version=1, fence=4)),  # fence wins
        (4, lambda: db.delete_session(a, fence=4)),
        (1, lambda: db.delete_session(a, fence=1)),
    ):
        with pytest.raises(errors.FencedError) as info:
            await call()
        assert (info.value.token, info.value.current) == (token, 5)
    assert await db.get_keys(a, "session", ["a"]) == {"a": b"1"}
    assert await db.get_keys(a, "pre-key", ["1"]) == {}
    assert await db.load_creds(a) == CredsRecord(b"creds", 1)
    # Unfenced writes pass and keep the recorded fence; an equal or higher token passes.
    await db.write_keys(a, [KeyWrite("session", "a", b"3"), KeyWrite("session", "u", b"u")])
    await assert_fenced_write(db, a, 4, 5)
    await db.write_keys(a, [KeyWrite("session", "a", b"5b")], fence=5)
    await db.write_keys(a, [KeyWrite("session", "a", b"4")], fence=7)  # higher: recorded
    await assert_fenced_write(db, a, 6, 7)
    assert await db.get_keys(a, "session", ["a", "u"]) == {"a": b"4", "u": b"u"}
    assert await db.save_creds(a, b"c", fence=9) == 2  # deletion keeps it: tests further down


async def test_racing_holders_through_separate_clients_the_highest_wins(durable: Durable) -> None:
    """Writers with tokens 1..24 race through 4 clients: the highest token always wins."""
    clients = [durable.backend, *[await durable.another() for _ in range(3)]]
    for rnd in range(3 if durable.slow else 15):
        a = durable.addr(f"r{rnd}")
        tokens = list(range(1, 25))
        order = tokens[rnd % 7 :] + tokens[: rnd % 7]  # vary who starts first
        fenced: list[bool] = []

        async def write(tok: int, a: SessionAddr = a, fenced: list[bool] = fenced) -> int | None:
            blob = str(tok).encode()
            writes = [KeyWrite("session", "x", blob), KeyWrite("sender-key", "y", blob)]
            try:
                await clients[tok % len(clients)].write_keys(a, writes, fence=tok)
            except errors.FencedError as exc:
                fenced.append(exc.current > tok)
                return None
            return tok

        done = await asyncio.gather(*(write(t) for t in order))
        assert max(tokens) in done
        assert all(fenced)
        assert await durable.backend.get_keys(a, "session", ["x"]) == {"x": b"24"}
        assert await durable.backend.get_keys(a, "sender-key", ["y"]) == {"y": b"24"}
        with pytest.raises(errors.FencedError):
            await durable.backend.save_creds(a, b"late", fence=23)


async def test_stale_writers_never_slip_past_a_new_fence(durable: Durable) -> None:
    old, new, a = durable.backend, await durable.another(), durable.addr()
    await old.write_keys(a, [KeyWrite("session", "x", b"old")], fence=1)

    wrote = [asyncio.Event() for _ in range(3)]

    async def stale(i: int) -> str:
        for n in range(2000):
            try:
                await old.write_keys(a, [KeyWrite("session", "x", b"old%d-%d" % (i, n))], fence=1)
            except errors.FencedError:
                return "fenced"
            wrote[i].set()
            await asyncio.sleep(0)  # memory never awaits inside a call: let the others run
        return "never fenced"

    tasks = [asyncio.create_task(stale(i)) for i in range(3)]
    for event in wrote:  # the new holder's write lands while every stale writer is going
        await event.wait()
    await new.write_keys(a, [KeyWrite("session", "x", b"NEW")], fence=2)
    assert await asyncio.gather(*tasks) == ["fenced"] * 3
    # A check-then-write would let an old write land after NEW; an atomic fence check cannot.
    assert await new.get_keys(a, "session", ["x"]) == {"x": b"NEW"}


async def test_fence_survives_delete_session(durable: Durable) -> None:
    db, a = durable.backend, durable.addr("deleted")
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=5)
    await db.save_creds(a, b"c", fence=5)
    await db.advance_fence(a, 9)
    assert await db.delete_session(a, fence=9)
    await assert_all_fenced(db, a, 5, 9)
    # The holder of the fence (or a newer one) can start the session again.
    await db.write_keys(a, [KeyWrite("session", "x", b"new")], fence=9)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"new"}
    await assert_fenced_write(db, a, 8, 9)


async def test_fence_before_first_write_holds(durable: Durable) -> None:
    db, a = durable.backend, durable.addr("never-written")
    await db.advance_fence(a, 12)
    await assert_all_fenced(db, a, 11, 12)
    await db.advance_fence(a, 15)  # a higher barrier on the still-absent session
    await assert_all_fenced(db, a, 12, 15)
    await db.save_creds(a, b"c", fence=15)
    assert await db.load_creds(a) == CredsRecord(b"c", 1)


async def test_delete_without_fence_keeps_the_fence(durable: Durable) -> None:
    """An operator's ``sessions delete`` (no token) must not reset the fence either."""
    db, a = durable.backend, durable.addr("op-deleted")
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=7)
    assert await db.delete_session(a)
    await assert_all_fenced(db, a, 6, 7)


async def test_unfenced_writes_still_work_after_delete(durable: Durable) -> None:
    """Stores without leases (fence=None) are not affected by a tombstone."""
    db, a = durable.backend, durable.addr("plain")
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=3)
    assert await db.delete_session(a)
    await db.write_keys(a, [KeyWrite("session", "x", b"2")])
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"2"}


async def test_tombstones_are_not_sessions_and_floor_the_next_lease(durable: Durable) -> None:
    db = durable.backend
    assert isinstance(db, LeaseBackend)
    a, never, plain = durable.fresh(), durable.fresh(), durable.fresh()
    f5, f6, f7, f9 = (n << FENCE_SHIFT for n in (5, 6, 7, 9))
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=f5)
    await db.save_creds(a, b"c", fence=f5)
    assert await db.apply_batch(a, [], None, seq=3, fence=f5)
    assert await db.delete_session(a, fence=f6)
    assert not await db.delete_session(a, fence=f6)  # a tombstone is not a session
    await db.advance_fence(never, f9)
    await db.write_keys(plain, [KeyWrite("session", "x", b"1")])  # a store without leases
    assert await db.delete_session(plain)
    assert await db.delete_session(durable.fresh()) is False
    assert await durable.listed() == {}
    assert await db.acquire_lease(a, "p1", 5000) == 7  # floored on the tombstone's fence
    assert await db.acquire_lease(never, "p1", 5000) == 10
    # Revived by the holder of the fence: a new session (version chain restarts).
    assert await db.save_creds(a, b"c2", expected_version=0, fence=f7) == 1
    assert await durable.listed() == {a.session_id: 1}
    # The outbox sequence restarted with the session: its first batch applies.
    assert await db.apply_batch(never, [KeyWrite("session", "y", b"2")], None, seq=1, fence=f9 + 1)
    assert await db.get_keys(never, "session", ["y"]) == {"y": b"2"}


async def test_barrier_and_stale_writers_racing_on_a_missing_session(durable: Durable) -> None:
    """Two clients: the stale writer's insert and the barrier's tombstone never both win."""
    old, new = durable.backend, await durable.another()
    stale, barrier = 5 << FENCE_SHIFT, 6 << FENCE_SHIFT
    rounds, width = (3, 4) if durable.slow else (10, 8)
    for _ in range(rounds):
        addrs = [durable.fresh() for _ in range(width)]
        calls: list[Any] = []
        for a in addrs:
            calls += [
                old.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=stale),
                old.save_creds(a, b"stale", fence=stale),
                old.apply_batch(a, [KeyWrite("pre-key", "1", b"s")], None, seq=1, fence=stale),
                new.advance_fence(a, barrier),
            ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            assert r is None or isinstance(r, (bool, int, errors.FencedError)), r
        for a in addrs:  # whatever order they ran in, the barrier holds from now on
            with pytest.raises(errors.FencedError) as info:
                await old.write_keys(a, [KeyWrite("session", "y", b"late")], fence=stale + 1)
            assert info.value.current == barrier
            assert await new.get_keys(a, "session", ["y"]) == {}
