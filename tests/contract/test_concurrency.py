"""Concurrency proof: Baileys' write pattern on one session loses nothing and rolls nothing back.

The workload replays what a client does on one session: single-type ``set``s of ``session``,
``sender-key`` and ``pre-key`` deletes, Baileys' per-type split of one ``set`` run in parallel,
and multi-type transactions ``{session: {a: None | new}, identity-key: {a: new}}``, interleaved
with reads. Every key is written by exactly one *chain* (a logical writer that awaits each write
before the next), so its final value is well defined; chains run concurrently with each other
and with readers. A model records each key's last written value; the store must match it.

Atomicity is observed by readers: identity keys carry a generation ``g`` that each transaction
bumps, and every ``session`` value carries the generation it was written under. With atomic
transactions a reader can never see (identity g, then session < g) nor (session g, then
identity < g).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from baileys_store import AuthStore, KeyStore, errors
from tests.backends import CONTRACT_BACKENDS
from tests.conftest import Backend
from tests.contract.test_creds import node_creds

# Backends whose fixture puts an in-process cache in front of the durable tier (the memory cache
# locks SQLite out), or a Redis cache with leases (one writer per session: a second store gets
# LeaseHeldError, proven in tests/integration/test_hybrid.py). Two stores writing one session
# at once is not their model. Every other backend must pass the two-store proof.
PER_STORE_CACHE = {
    "memory",
    "sqlite",
    "sqlite-encrypted",
    "redis-cache",
    "hybrid-wb",
    "hybrid-postgres",
    "hybrid-postgres-wb",
}
SHARED_BACKENDS = [n for n in CONTRACT_BACKENDS if n not in PER_STORE_CACHE]

CHAINS = 12
ADDRS_PER_CHAIN = 3
READERS = 3
ORDERS = {True: ("identity-key", "session"), False: ("session", "identity-key")}


def op_budget(name: str) -> int:
    """Writer calls per run: ``BAILEYS_TESTS_CONCURRENCY_OPS``, else a size kept short.

    Slow backends (the Mongo stand-in: ~1 ms per op) get fewer, so each run stays under ~20 s.
    """
    env = os.environ.get("BAILEYS_TESTS_CONCURRENCY_OPS")
    if env:
        return int(env)
    return 600 if "mongo" in name else 3000


def _session_value(addr: str, gen: int, chain: int, n: int) -> bytes:
    return f"s|{addr}|{gen}|{chain}|{n}|".encode() + os.urandom(48)


def _identity_value(addr: str, gen: int) -> bytes:
    return b"\x05" + f"i|{addr}|{gen}|".encode()


def _gen(value: bytes) -> int:
    return int(value.split(b"|")[2])


@dataclass
class Workload:
    """One session hammered by ``CHAINS`` writers and ``READERS`` readers over ``stores``."""

    stores: list[AuthStore]
    namespace: str
    budget: int
    seed: int = 1234
    model: dict[tuple[str, str], Any] = field(default_factory=dict)
    gens: dict[str, int] = field(default_factory=dict)
    ops: int = 0  # writers' calls (the budget); readers' calls are counted apart
    reads: int = 0
    transactions: int = 0
    violations: list[str] = field(default_factory=list)
    reader_checks: int = 0

    def keys(self, rng: random.Random) -> KeyStore:
        return rng.choice(self.stores).session("s1", namespace=self.namespace).keys

    async def set(self, rng: random.Random, data: dict[str, dict[str, Any]]) -> None:
        await self.keys(rng).set(data)
        self.ops += 1
        for key_type, items in data.items():
            for key_id, value in items.items():
                self.model[(key_type, key_id)] = value

    async def preload(self) -> dict[int, list[str]]:
        """Initial state: identity + session of every address, and the chains' pre-keys."""
        rng = random.Random(self.seed)
        pre_keys: dict[int, list[str]] = {}
        data: dict[str, dict[str, Any]] = {"session": {}, "identity-key": {}, "pre-key": {}}
        per_chain = max(4, min(812, self.budget // 4) // CHAINS)
        for c in range(CHAINS):
            for a in self.addrs(c):
                self.gens[a] = 0
                data["session"][a] = _session_value(a, 0, c, 0)
                data["identity-key"][a] = _identity_value(a, 0)
            pre_keys[c] = [str(1 + c * per_chain + k) for k in range(per_chain)]
            for pid in pre_keys[c]:
                data["pre-key"][pid] = {"public": os.urandom(32), "private": os.urandom(32)}
        await self.set(rng, data)
        return pre_keys

    @staticmethod
    def addrs(chain: int) -> list[str]:
        return [f"55119{chain:04d}{k}.{k % 3}" for k in range(ADDRS_PER_CHAIN)]

    async def chain(self, c: int, pre_keys: list[str]) -> None:
        rng = random.Random(self.seed * 1000 + c)
        addrs = self.addrs(c)
        sender_ids = [f"1203630{c:03d}@g.us::55119{c:04d}::{k}" for k in range(2)]
        n = 0
        while self.ops < self.budget:
            n += 1
            a = rng.choice(addrs)
            roll = rng.random()
            if roll < 0.30:  # encrypt/decrypt: one session record
                await self.set(rng, {"session": {a: _session_value(a, self.gens[a], c, n)}})
            elif roll < 0.35:  # session dropped alone
                await self.set(rng, {"session": {a: None}})
            elif roll < 0.47:  # group message
                value = f"k|{c}|{n}".encode()
                await self.set(rng, {"sender-key": {rng.choice(sender_ids): value}})
            elif roll < 0.55 and pre_keys:  # a pkmsg consumed a pre-key
                await self.set(rng, {"pre-key": {pre_keys.pop(): None}})
            elif roll < 0.72:  # identity change: one multi-type transaction
                self.gens[a] += 1
                g = self.gens[a]
                new = None if rng.random() < 0.5 else _session_value(a, g, c, n)
                identity = _identity_value(a, g)
                await self.set(rng, {"session": {a: new}, "identity-key": {a: identity}})
                self.transactions += 1
            elif roll < 0.82:  # Baileys splits one set by type and runs the parts in parallel
                parts: list[dict[str, dict[str, Any]]] = [
                    {"session": {a: _session_value(a, self.gens[a], c, n)}},
                    {"sender-key": {rng.choice(sender_ids): f"k|{c}|{n}|p".encode()}},
                ]
                if pre_keys:
                    parts.append({"pre-key": {pre_keys.pop(): None}})
                await asyncio.gather(*(self.set(rng, p) for p in parts))
            else:  # read-your-writes on this chain's own keys
                await self.verify_own(rng, c, addrs, sender_ids)

    async def verify_own(
        self, rng: random.Random, c: int, addrs: list[str], sender: list[str]
    ) -> None:
        keys = self.keys(rng)
        for key_type, ids in (("session", addrs), ("identity-key", addrs), ("sender-key", sender)):
            got = await keys.get(key_type, ids)
            self.ops += 1
            for i in ids:
                want = self.model.get((key_type, i))
                if got.get(i) != want:
                    self.violations.append(f"chain {c}: {key_type} {i} read back stale")

    async def reader(self, r: int, done: asyncio.Event) -> None:
        rng = random.Random(self.seed * 7 + r)
        every = [a for c in range(CHAINS) for a in self.addrs(c)]
        while not done.is_set():
            a = rng.choice(every)
            keys = self.keys(rng)
            first, second = ORDERS[rng.random() < 0.5]
            one = (await keys.get(first, [a])).get(a)
            await asyncio.sleep(0)
            two = (await keys.get(second, [a])).get(a)
            self.reads += 2
            if one is None or two is None:
                continue  # a deleted session carries no generation
            self.reader_checks += 1
            if _gen(two) < _gen(one):
                self.violations.append(
                    f"reader: {first} {a} at gen {_gen(one)}, then {second} at gen {_gen(two)}"
                )

    async def run(self) -> None:
        pre_keys = await self.preload()
        done = asyncio.Event()
        readers = [asyncio.create_task(self.reader(r, done)) for r in range(READERS)]
        try:
            await asyncio.gather(*(self.chain(c, pre_keys[c]) for c in range(CHAINS)))
        finally:
            done.set()
            await asyncio.gather(*readers)

    async def compare(self, keys: KeyStore) -> dict[str, list[str]]:
        """Diff the store against the model: lost, rolled back (stale), resurrected keys."""
        out: dict[str, list[str]] = {"lost": [], "rolled_back": [], "resurrected": []}
        by_type: dict[str, list[str]] = {}
        for key_type, key_id in self.model:
            by_type.setdefault(key_type, []).append(key_id)
        for key_type, ids in by_type.items():
            got = await keys.get(key_type, ids)
            for i in ids:
                want = self.model[(key_type, i)]
                if want is None and i in got:
                    out["resurrected"].append(f"{key_type} {i}")
                elif want is not None and i not in got:
                    out["lost"].append(f"{key_type} {i}")
                elif want is not None and got[i] != want:
                    out["rolled_back"].append(f"{key_type} {i}")
        return out


async def _prove(backend: Backend, stores: list[AuthStore]) -> Workload:
    work = Workload(stores, backend.namespace, op_budget(backend.name))
    await work.run()
    assert work.violations == []
    assert work.ops >= work.budget
    assert work.transactions > work.budget // 20
    assert work.reader_checks > 0
    for store in stores:  # what the running stores (and their caches) serve
        diff = await work.compare(store.session("s1", namespace=backend.namespace).keys)
        assert diff == {"lost": [], "rolled_back": [], "resurrected": []}
    return work


async def test_baileys_write_pattern_loses_nothing(backend: Backend) -> None:
    async with backend.open() as store:
        work = await _prove(backend, [store])
        assert len(store._engine.tiers.states) == 0  # per-session state released once idle
    async with backend.open() as store:  # what the durable tier kept
        diff = await work.compare(store.session("s1", namespace=backend.namespace).keys)
    assert diff == {"lost": [], "rolled_back": [], "resurrected": []}
    deleted = [k for k, v in work.model.items() if v is None]
    assert len(deleted) > 10  # the proof covered deletes, not only upserts


@pytest.mark.parametrize("backend", SHARED_BACKENDS, indirect=True)
async def test_two_stores_on_the_same_data(backend: Backend) -> None:
    assert backend.config.cache is None, f"{backend.name} has a cache: add it to PER_STORE_CACHE"
    async with backend.open() as one, backend.open() as two:
        work = await _prove(backend, [one, two])
    async with backend.open() as store:
        diff = await work.compare(store.session("s1", namespace=backend.namespace).keys)
    assert diff == {"lost": [], "rolled_back": [], "resurrected": []}


def cas_rounds(name: str) -> int:
    """Rounds of the compare-and-set race (fewer on the slow Mongo stand-in)."""
    return 3 if "mongo" in name else 6


async def _race_cas(
    save: Callable[[int, dict[str, Any], int], Awaitable[int]], rounds: int, writers: int
) -> dict[str, Any]:
    """``rounds`` of ``writers`` concurrent saves from the same version; returns the last winner."""
    winner: dict[str, Any] = {}
    for version in range(1, rounds + 1):
        attempts = [node_creds() for _ in range(writers)]
        results = await asyncio.gather(
            *(save(w, c, version) for w, c in enumerate(attempts)), return_exceptions=True
        )
        won = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert results[won[0]] == version + 1
        for n, r in enumerate(results):
            if n != won[0]:
                assert isinstance(r, errors.ConflictError), r
                assert (r.expected, r.actual) == (version, version + 1)
        winner = attempts[won[0]]
    return winner


async def _check_cas(backend: Backend, stores: list[AuthStore], writers: int) -> None:
    sessions = [s.session("s1", namespace=backend.namespace) for s in stores]
    assert await sessions[0].save_creds(node_creds(), expected_version=0) == 1

    async def save(w: int, creds: dict[str, Any], version: int) -> int:
        return await sessions[w % len(sessions)].save_creds(creds, expected_version=version)

    rounds = cas_rounds(backend.name)
    winner = await _race_cas(save, rounds, writers)
    for sess in sessions:
        assert await sess.creds_version() == rounds + 1
        assert await sess.load_creds() == winner


async def test_concurrent_cas_has_exactly_one_winner(backend: Backend) -> None:
    async with backend.open() as store:
        await _check_cas(backend, [store], writers=8)
    async with backend.open() as store:
        version = await store.session("s1", namespace=backend.namespace).creds_version()
    assert version == cas_rounds(backend.name) + 1


@pytest.mark.parametrize("backend", SHARED_BACKENDS, indirect=True)
async def test_concurrent_cas_across_two_stores(backend: Backend) -> None:
    assert backend.config.cache is None, f"{backend.name} has a cache: add it to PER_STORE_CACHE"
    async with backend.open() as one, backend.open() as two:
        await _check_cas(backend, [one, two], writers=8)
