"""Creds compare-and-set on every durable tier: one winner per version, versions never go back."""

from __future__ import annotations

import asyncio

import pytest

from baileys_store import errors
from baileys_store._model import CredsRecord, KeyWrite
from tests.conftest import Durable


@pytest.mark.parametrize("instances", [1, 4])
async def test_cas_race_exactly_one_winner(durable: Durable, instances: int) -> None:
    """Ten savers per version race through one client or four (pools, processes)."""
    clients = [durable.backend, *[await durable.another() for _ in range(instances - 1)]]
    a = durable.addr()
    assert await clients[0].save_creds(a, b"v1", expected_version=0) == 1
    for version in range(1, 6):
        blobs = [f"w{version}-{n}".encode() for n in range(10)]
        results = await asyncio.gather(
            *(
                clients[n % instances].save_creds(a, b, expected_version=version)
                for n, b in enumerate(blobs)
            ),
            return_exceptions=True,
        )
        won = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert results[won[0]] == version + 1
        for n, r in enumerate(results):
            if n != won[0]:
                assert isinstance(r, errors.ConflictError), r
                assert (r.expected, r.actual) == (version, version + 1)
        assert await clients[-1].load_creds(a) == CredsRecord(blobs[won[0]], version + 1)
    # expected=None saves always land; versions never go back.
    assert await clients[-1].save_creds(a, b"any") == 7


async def test_cas_on_missing_or_new_session_and_versions_never_go_back(
    durable: Durable,
) -> None:
    db, a = durable.backend, durable.addr()
    with pytest.raises(errors.ConflictError) as info:
        await db.save_creds(a, b"x", expected_version=3)
    assert (info.value.expected, info.value.actual) == (3, 0)
    assert await db.load_creds(a) is None
    await db.write_keys(a, [KeyWrite("session", "1", b"k")])  # a session, no creds yet
    assert await db.save_creds(a, b"x", expected_version=0) == 1
    with pytest.raises(errors.ConflictError) as info:
        await db.save_creds(a, b"y", expected_version=0)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert await db.save_creds(a, b"z") == 2
    assert await db.save_creds(a, b"z2", expected_version=None) == 3
    await db.clear_keys(a)  # keys only: the creds version stays
    assert await db.save_creds(a, b"c", expected_version=3) == 4
    assert await db.load_creds(a) == CredsRecord(b"c", 4)
