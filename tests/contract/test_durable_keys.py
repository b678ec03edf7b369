"""Keys, listings and the backend's lifecycle on every durable tier, called directly."""

from __future__ import annotations

import asyncio

import pytest

from baileys_store import errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends.memory import MemoryDurable
from tests.conftest import Durable


async def test_812_pre_keys_and_other_types_in_one_write(durable: Durable) -> None:
    """Pairing's 812 pre-keys plus sessions in one atomic call; 1,200 deletes in another."""
    db, a = durable.backend, durable.addr()
    pre = [KeyWrite("pre-key", str(i), i.to_bytes(4, "big") * 30) for i in range(1, 813)]
    sessions = [KeyWrite("session", f"{i}.0", b"s") for i in range(30)]
    await db.write_keys(a, [*pre, *sessions, KeyWrite("pre-key", "5", None)])  # last wins
    ids = [w.id for w in pre]
    got = await db.get_keys(a, "pre-key", ids)
    assert len(got) == 811
    assert "5" not in got
    assert got["812"] == pre[-1].blob
    assert await db.count_keys(a) == {"pre-key": 811, "session": 30}
    dels = [KeyWrite("pre-key", str(i), None) for i in range(1, 1201)]  # absent ones too
    await db.write_keys(a, [*dels, KeyWrite("session", "0.0", b"new")])
    assert await db.get_keys(a, "pre-key", ids) == {}
    assert await db.get_keys(a, "session", ["0.0", "1.0"]) == {"0.0": b"new", "1.0": b"s"}
    assert await db.clear_keys(a) == 30


async def test_ids_and_values_are_stored_exactly(durable: Durable) -> None:
    db, a = durable.backend, durable.addr()
    ids = ["5511@s.whatsapp.net:3", "a.b$c|d", "120363@g.us::5511::0", "AbC+/=="]
    await db.write_keys(a, [KeyWrite("sender-key", i, i.encode() + b"\0\xff") for i in ids])
    assert await db.get_keys(a, "sender-key", [*ids, "absent"]) == {
        i: i.encode() + b"\0\xff" for i in ids
    }
    assert sorted([pair async for pair in db.iter_key_ids(a)]) == [
        ("sender-key", i) for i in sorted(ids)
    ]


async def test_sessions_with_colons_never_share_keys(durable: Durable) -> None:
    db, ns = durable.backend, durable.namespace
    a, b = SessionAddr(f"{ns}:b", "c"), SessionAddr(ns, "b:c")
    await db.write_keys(a, [KeyWrite("session", "1", b"A")])
    await db.write_keys(b, [KeyWrite("session", "1", b"B")])
    assert await db.get_keys(a, "session", ["1"]) == {"1": b"A"}
    assert await db.get_keys(b, "session", ["1"]) == {"1": b"B"}


async def test_concurrent_unfenced_writers_of_one_session(durable: Durable) -> None:
    # Separate clients (processes) writing one session at once: MongoDB aborts conflicting
    # transactions rather than queueing them; every write must still land.
    writers = [durable.backend, *[await durable.another() for _ in range(5)]]
    a = durable.addr()

    async def write(i: int) -> None:
        for n in range(15):
            await writers[i].write_keys(
                a, [KeyWrite("session", f"{i}.{n}", b"s"), KeyWrite("pre-key", f"{i}-{n}", b"p")]
            )

    await asyncio.gather(*(write(i) for i in range(6)))
    ids = [f"{i}.{n}" for i in range(6) for n in range(15)]
    assert len(await durable.backend.get_keys(a, "session", ids)) == len(ids)
    assert await durable.listed() == {a.session_id: 0}


async def test_list_sessions_in_byte_order(durable: Durable) -> None:
    db, ns = durable.backend, durable.namespace
    names = [(ns, "1"), (ns, "2"), (ns, "B"), (ns, "Z-1"), (ns, "a")]
    names += [(f"{ns}-b", "1"), (f"{ns}.b", "x"), (f"{ns}/b", "y"), (f"{ns}b", "z")]
    for n, sid in reversed(names):
        await db.write_keys(SessionAddr(n, sid), [KeyWrite("session", "1", b"v")])
    await db.save_creds(SessionAddr(ns, "2"), b"c")
    everything = [(i.namespace, i.session_id) async for i in db.list_sessions()]
    assert everything == sorted(everything)
    assert [x for x in everything if x[0].startswith(ns)] == sorted(names)
    assert await durable.listed() == {"1": 0, "2": 1, "B": 0, "Z-1": 0, "a": 0}
    assert [i.session_id async for i in db.list_sessions(ns)] == ["1", "2", "B", "Z-1", "a"]
    assert await db.delete_session(SessionAddr(ns, "1")) is True
    assert list(await durable.listed()) == ["2", "B", "Z-1", "a"]


async def test_delete_racing_recreate_keeps_the_session_listed(durable: Durable) -> None:
    db, a = durable.backend, durable.addr("s")
    for _ in range(20):
        await db.write_keys(a, [KeyWrite("session", "1", b"v")])
        await asyncio.gather(db.delete_session(a), db.save_creds(a, b"c"), db.delete_session(a))
        # The save either came after the last delete (a session with creds) or it is all gone.
        exists = await db.load_creds(a) is not None
        assert await durable.listed() == ({"s": 1} if exists else {})
        assert await db.get_keys(a, "session", ["1"]) == {}


async def test_bind_meta_binds_once_and_every_client_agrees(durable: Durable) -> None:
    db, name = durable.backend, f"test-{durable.namespace}"
    assert await db.bind_meta(name, "a,b") == "a,b"
    assert await db.bind_meta(name, "c") == "a,b"
    other = await durable.another()
    assert other.store_id == db.store_id != ""
    assert await other.bind_meta(name, "c") == "a,b"
    assert await other.bind_meta(name, "d", replace=True) == "d"
    assert await db.bind_meta(name, "e") == "d"


async def test_closed_backend_raises(durable: Durable) -> None:
    backend = durable.make()
    if isinstance(backend, MemoryDurable):
        # A dict has no connection: it answers before open and after close alike.
        assert (await backend.check()).ok
        await backend.close()
        assert await backend.save_creds(durable.addr(), b"x") == 1
        return
    with pytest.raises(errors.StoreClosedError):
        await backend.get_keys(durable.addr(), "session", ["a"])
    assert (await backend.check()).ok is False
    await backend.open()
    assert (await backend.check()).ok is True
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(errors.StoreClosedError):
        await backend.save_creds(durable.addr(), b"x")
    assert (await backend.check()).ok is False
