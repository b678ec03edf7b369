"""The fence barrier (``advance_fence``), drained outbox batches (``apply_batch``), leases.

Run on every durable tier of the contract, alone (``tests.conftest.durable``).
"""

from __future__ import annotations

import asyncio

import pytest

from baileys_store import errors
from baileys_store._model import FENCE_SHIFT, CredsRecord, KeyWrite
from baileys_store.contracts import LeaseBackend
from tests.conftest import Durable


async def test_advance_fence_records_higher_and_rejects_lower(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=3)
    await db.advance_fence(a, 3)  # equal: the holder itself, accepted
    await db.advance_fence(a, 20)
    with pytest.raises(errors.FencedError) as info:
        await db.advance_fence(a, 19)
    assert (info.value.token, info.value.current) == (19, 20)
    for write in (
        db.write_keys(a, [KeyWrite("session", "x", b"2")], fence=10),
        db.save_creds(a, b"c", fence=10),
        db.clear_keys(a, fence=10),
        db.delete_session(a, fence=10),
    ):
        with pytest.raises(errors.FencedError) as info:
            await write
        assert info.value.current == 20
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"1"}
    await db.write_keys(a, [KeyWrite("session", "x", b"3")], fence=20)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"3"}


async def test_advance_fence_on_absent_session_lists_nothing(durable: Durable) -> None:
    db, a = durable.backend, durable.addr("ghost")
    await db.advance_fence(a, 7)
    assert "ghost" not in await durable.listed()
    assert await db.load_creds(a) is None


async def test_apply_batch_applies_at_most_once(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    writes = [
        KeyWrite("session", "x", b"1"),
        KeyWrite("pre-key", "1", b"p"),
        KeyWrite("pre-key", "2", b"q"),
    ]
    assert await db.apply_batch(a, writes, CredsRecord(b"c5", 5), seq=4, fence=2)
    assert await durable.listed() == {"s1": 5}
    for seq in (4, 3, 1):  # redeliveries of this or older batches change nothing
        again = [KeyWrite("session", "x", b"old"), KeyWrite("pre-key", "1", None)]
        assert not await db.apply_batch(a, again, CredsRecord(b"old", 9), seq=seq, fence=2)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"1"}
    assert await db.get_keys(a, "pre-key", ["1", "2"]) == {"1": b"p", "2": b"q"}
    assert await db.load_creds(a) == CredsRecord(b"c5", 5)
    assert await db.apply_batch(a, [KeyWrite("pre-key", "1", None)], None, seq=5, fence=2)
    assert await db.get_keys(a, "pre-key", ["1", "2"]) == {"2": b"q"}
    assert await db.load_creds(a) == CredsRecord(b"c5", 5)  # creds None: untouched


async def test_redelivery_after_a_takeover_is_skipped_not_fenced(durable: Durable) -> None:
    # The sequence check comes first: a batch applied before a new holder advanced the fence
    # is a redelivery, not a stale write.
    db, a = durable.backend, durable.addr()
    assert await db.apply_batch(a, [KeyWrite("session", "x", b"1")], None, seq=1, fence=5)
    await db.advance_fence(a, 9)
    assert not await db.apply_batch(a, [KeyWrite("session", "x", b"1")], None, seq=1, fence=5)
    with pytest.raises(errors.FencedError) as info:
        await db.apply_batch(a, [KeyWrite("session", "x", b"2")], None, seq=2, fence=5)
    assert (info.value.token, info.value.current) == (5, 9)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"1"}


async def test_fenced_batch_applies_nothing(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    await db.save_creds(a, b"c1", fence=10)
    await db.write_keys(a, [KeyWrite("session", "x", b"1")], fence=10)
    writes = [
        KeyWrite("session", "x", None),
        KeyWrite("session", "y", b"2"),
        KeyWrite("sender-key", "g", b"3"),
    ]
    with pytest.raises(errors.FencedError):
        await db.apply_batch(a, writes, CredsRecord(b"c9", 9), seq=1, fence=9)
    assert await db.get_keys(a, "session", ["x", "y"]) == {"x": b"1"}
    assert await db.get_keys(a, "sender-key", ["g"]) == {}
    assert await db.load_creds(a) == CredsRecord(b"c1", 1)
    # The fenced batch did not record its sequence: the same seq still applies.
    assert await db.apply_batch(a, writes, CredsRecord(b"c9", 9), seq=1, fence=10)
    assert await db.get_keys(a, "session", ["x", "y"]) == {"y": b"2"}
    assert await db.get_keys(a, "sender-key", ["g"]) == {"g": b"3"}


async def test_batch_creds_version_is_stored_exactly(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    await db.save_creds(a, b"c1")
    await db.save_creds(a, b"c2", expected_version=1)
    assert await db.apply_batch(a, [], CredsRecord(b"c7", 7), seq=1)  # no compare-and-set
    assert await db.load_creds(a) == CredsRecord(b"c7", 7)
    assert await db.apply_batch(a, [], CredsRecord(b"c3", 3), seq=2)  # nor a "newer" check
    assert await db.load_creds(a) == CredsRecord(b"c3", 3)
    assert await db.save_creds(a, b"c4", expected_version=3) == 4
    with pytest.raises(errors.ConflictError):
        await db.save_creds(a, b"x", expected_version=7)


async def test_empty_batch_records_its_sequence(durable: Durable) -> None:
    db, a = durable.backend, durable.addr("empty")
    assert await db.apply_batch(a, [], None, seq=3)
    assert not await db.apply_batch(a, [KeyWrite("session", "x", b"1")], None, seq=3)
    assert await db.get_keys(a, "session", ["x"]) == {}
    assert await db.apply_batch(a, [KeyWrite("session", "x", b"1")], None, seq=4)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"1"}


async def test_sequence_survives_clear_keys_and_resets_on_delete(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    assert await db.apply_batch(a, [KeyWrite("session", "x", b"1")], CredsRecord(b"c", 2), seq=8)
    assert await db.clear_keys(a) == 1
    assert not await db.apply_batch(a, [KeyWrite("session", "x", b"old")], None, seq=8)
    assert await db.get_keys(a, "session", ["x"]) == {}
    assert await db.load_creds(a) == CredsRecord(b"c", 2)  # clear_keys keeps the creds
    assert await db.delete_session(a)
    assert await durable.listed() == {}
    assert await db.apply_batch(a, [KeyWrite("session", "x", b"new")], None, seq=1)
    assert await db.get_keys(a, "session", ["x"]) == {"x": b"new"}
    assert await db.load_creds(a) is None
    assert await durable.listed() == {"s1": 0}


async def test_concurrent_deliveries_and_acquirers_on_one_new_session(durable: Durable) -> None:
    db = durable.backend
    assert isinstance(db, LeaseBackend)
    for fenced in (False, True):
        a = durable.addr(f"race-{fenced}")
        batches = [[KeyWrite("session", "x", b"%d" % n)] for n in range(1, 9)]
        results = await asyncio.gather(
            *(
                db.apply_batch(a, w, None, seq=1, fence=n if fenced else None)
                for n, w in enumerate(batches, 1)
            ),
            return_exceptions=True,
        )
        won = [n for n, r in enumerate(results, 1) if r is True]
        assert len(won) == 1, results
        assert await db.get_keys(a, "session", ["x"]) == {"x": b"%d" % won[0]}
        # The others: a redelivery (False) or, fenced, refused by a higher token that won first.
        others = [r for r in results if r is not True]
        assert all(r is False or (fenced and isinstance(r, errors.FencedError)) for r in others)
    b = durable.addr("lease")
    tokens = await asyncio.gather(*(db.acquire_lease(b, f"p{n}", 5000) for n in range(20)))
    assert [t for t in tokens if t is not None] == [1]


async def test_lease_tokens_keep_rising_across_delete_session(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    assert isinstance(db, LeaseBackend)
    token = await db.acquire_lease(a, "p1", 60_000)
    assert token is not None
    await db.write_keys(a, [KeyWrite("session", "a", b"1")], fence=token << FENCE_SHIFT)
    assert await db.delete_session(a)
    assert await db.acquire_lease(a, "p1", 1000) == token + 1
