"""``bind_meta``: the store's own metadata (encryption mode, key fingerprints), first write wins."""

from __future__ import annotations

import asyncio
import uuid

from baileys_store import AuthStore


async def test_bind_meta_first_value_wins(store: AuthStore) -> None:
    durable = store.durable
    name = f"test:{uuid.uuid4().hex[:8]}"
    assert await durable.bind_meta(name, "a") == "a"
    assert await durable.bind_meta(name, "b") == "a"
    assert await durable.bind_meta(name, "c", replace=True) == "c"
    assert await durable.bind_meta(name, "d") == "c"


async def test_bind_meta_concurrent_binders_agree(store: AuthStore) -> None:
    durable = store.durable
    name = f"test:{uuid.uuid4().hex[:8]}"
    got = await asyncio.gather(*(durable.bind_meta(name, f"v{i}") for i in range(8)))
    assert len(set(got)) == 1
    assert got[0] in {f"v{i}" for i in range(8)}
