"""The in-process cache's per-session index stays equal to its entries (so forget is exact)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends.memory import MemoryCache

ADDRS = [SessionAddr("ns", f"s{i}") for i in range(3)]
_write = st.tuples(
    st.sampled_from(ADDRS),
    st.sampled_from(["a", "b", "c", "d"]),
    st.one_of(st.none(), st.binary(min_size=1, max_size=2)),
)
_op = st.one_of(
    st.tuples(st.just("put"), st.lists(_write, max_size=4)),
    st.tuples(st.just("forget"), st.sampled_from(ADDRS)),
)


def _grouped(cache: MemoryCache) -> dict[SessionAddr, set[tuple[SessionAddr, str, str]]]:
    out: dict[SessionAddr, set[tuple[SessionAddr, str, str]]] = {}
    for k in cache._lru:
        out.setdefault(k[0], set()).add(k)
    return out


@settings(max_examples=200, deadline=None)
@given(bound=st.integers(0, 6), ops=st.lists(_op, max_size=30))
def test_index_matches_entries_through_puts_evictions_and_forgets(
    bound: int, ops: list[tuple[str, Any]]
) -> None:
    cache = MemoryCache(bound)
    for kind, arg in ops:
        if kind == "put":
            writes = [KeyWrite("session", i, b) for _, i, b in arg]
            addr = arg[0][0] if arg else ADDRS[0]
            asyncio.run(cache.update_keys(addr, writes, token=None))
        else:
            assert isinstance(arg, SessionAddr)
            before = {k for k in cache._lru if k[0] != arg}
            cache.forget(arg)
            assert set(cache._lru) == before  # exactly that session's entries went
        assert cache._by_session == _grouped(cache)
        assert len(cache._lru) <= bound
