"""Listing a session's keys (export, rotation, inspect) on every durable tier."""

from __future__ import annotations

from itertools import groupby

from baileys_store import AuthStore
from baileys_store._model import SessionAddr
from baileys_store.contracts import DurableBackend as KeyListing
from tests.conftest import Backend


async def test_every_key_is_listed_once_grouped_by_type(store: AuthStore, backend: Backend) -> None:
    durable = store.durable
    assert isinstance(durable, KeyListing), f"{durable.name} cannot list keys"
    keys = store.session("s1", namespace=backend.namespace).keys
    pre = {str(n): b"p" for n in range(1, 1205)}  # more than one page everywhere
    await keys.set(
        {
            "pre-key": pre,
            "pre-key2": {"1": b"q"},
            "session": {"a|b.0": b"s"},
            "sender-key": {"g@g.us::u::1": b"k"},
        }
    )
    await keys.set({"pre-key": {"7": None}})
    await store.drain_outbox()  # the durable tier's own view (write-behind: once drained)
    addr = SessionAddr(backend.namespace, "s1")
    listed = [pair async for pair in durable.iter_key_ids(addr)]
    assert len(listed) == len(set(listed)) == 1203 + 3
    types = [t for t, _ in groupby(t for t, _ in listed)]
    assert sorted(types) == sorted(set(types)) == ["pre-key", "pre-key2", "sender-key", "session"]
    assert ("session", "a|b.0") in listed
    assert ("pre-key", "7") not in listed
    assert await durable.count_keys(addr) == {
        "pre-key": 1203,
        "pre-key2": 1,
        "sender-key": 1,
        "session": 1,
    }
    await store.session("s1", namespace=backend.namespace).delete()
    assert [pair async for pair in durable.iter_key_ids(addr)] == []
    assert await durable.count_keys(addr) == {}
