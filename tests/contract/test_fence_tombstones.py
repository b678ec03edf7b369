"""A session's fence survives its deletion, and a fence set before the first write holds.

Run on every durable tier of the contract: a stale lease holder (paused, then resumed) must not
resurrect a deleted session or write into one a newer holder fenced before writing anything.
"""

from __future__ import annotations

import pytest

from baileys_store import AuthStore, errors
from baileys_store._model import CredsRecord, KeyWrite, SessionAddr
from baileys_store.contracts import DurableBackend
from tests.conftest import Backend


def addr(backend: Backend, sid: str) -> SessionAddr:
    return SessionAddr(backend.namespace, sid)


async def assert_all_fenced(
    durable: DurableBackend, a: SessionAddr, token: int, current: int
) -> None:
    """Every fenced write with ``token`` raises FencedError naming ``current``; none applies."""
    for write in (
        lambda: durable.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=token),
        lambda: durable.save_creds(a, b"stale", fence=token),
        lambda: durable.clear_keys(a, fence=token),
        lambda: durable.delete_session(a, fence=token),
        lambda: durable.advance_fence(a, token),
        lambda: durable.apply_batch(
            a,
            [KeyWrite("session", "x", b"stale")],
            CredsRecord(b"stale", 1),
            seq=10**6,
            fence=token,
        ),
    ):
        with pytest.raises(errors.FencedError) as info:
            await write()
        assert (info.value.token, info.value.current) == (token, current)
    assert await durable.get_keys(a, "session", ["x"]) == {}
    assert await durable.load_creds(a) is None
    listed = [i.session_id async for i in durable.list_sessions(a.namespace)]
    assert a.session_id not in listed


async def test_fence_survives_delete_session(store: AuthStore, backend: Backend) -> None:
    a, durable = addr(backend, "deleted"), store.durable
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=5)
    await durable.save_creds(a, b"c", fence=5)
    await durable.advance_fence(a, 9)
    assert await durable.delete_session(a, fence=9)
    await assert_all_fenced(durable, a, 5, 9)
    # The holder of the fence (or a newer one) can start the session again.
    await durable.write_keys(a, [KeyWrite("session", "x", b"new")], fence=9)
    assert await durable.get_keys(a, "session", ["x"]) == {"x": b"new"}
    await assert_fenced_write(durable, a, 8, 9)


async def assert_fenced_write(
    durable: DurableBackend, a: SessionAddr, token: int, current: int
) -> None:
    with pytest.raises(errors.FencedError) as info:
        await durable.write_keys(a, [KeyWrite("session", "x", b"stale")], fence=token)
    assert (info.value.token, info.value.current) == (token, current)


async def test_fence_before_first_write_holds(store: AuthStore, backend: Backend) -> None:
    a, durable = addr(backend, "never-written"), store.durable
    await durable.advance_fence(a, 12)
    await assert_all_fenced(durable, a, 11, 12)
    await durable.advance_fence(a, 15)  # a higher barrier on the still-absent session
    await assert_all_fenced(durable, a, 12, 15)
    await durable.save_creds(a, b"c", fence=15)
    assert await durable.load_creds(a) == CredsRecord(b"c", 1)


async def test_delete_without_fence_keeps_the_fence(store: AuthStore, backend: Backend) -> None:
    """An operator's ``sessions delete`` (no token) must not reset the fence either."""
    a, durable = addr(backend, "op-deleted"), store.durable
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=7)
    assert await durable.delete_session(a)
    await assert_all_fenced(durable, a, 6, 7)


async def test_unfenced_writes_still_work_after_delete(store: AuthStore, backend: Backend) -> None:
    """Stores without leases (fence=None) are not affected by a tombstone."""
    a, durable = addr(backend, "plain"), store.durable
    await durable.write_keys(a, [KeyWrite("session", "x", b"1")], fence=3)
    assert await durable.delete_session(a)
    await durable.write_keys(a, [KeyWrite("session", "x", b"2")])
    assert await durable.get_keys(a, "session", ["x"]) == {"x": b"2"}
