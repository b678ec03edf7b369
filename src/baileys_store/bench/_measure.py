"""Measurement loops: per-op latency, throughput under concurrency, scaling, resident sessions."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._ops import OpSpec
from ._stats import summarize
from ._stores import Target
from ._workload import (
    HEAVY,
    PREKEY_BATCH,
    QUICK,
    OpContext,
    Profile,
    Values,
    account_writes,
    payload_bytes,
    resident_profile,
)

Tick = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Budget:
    """How long each measurement runs (full and ``--quick`` presets)."""

    op_seconds: float
    min_iters: int
    max_iters: int
    warmup: int
    tp_seconds: float
    scale_sizes: tuple[int, ...]
    scale_iters: int
    profile: Profile
    signal_messages: int
    resident_seconds: float
    floor_samples: int


# Sized so a full run of every store stays under ~10 minutes on a 2-core machine.
FULL = Budget(0.3, 8, 1000, 3, 0.5, (10, 1_000, 10_000), 300, HEAVY, 50, 15.0, 2000)
QUICK_BUDGET = Budget(0.01, 3, 10, 1, 0.03, (10, 100, 500), 5, QUICK, 3, 0.5, 100)


async def time_op(op: OpSpec, ctx: OpContext, budget: Budget) -> list[float]:
    """Latency samples (ms) of ``op``.

    Runs until ``max_iters``, or until the time budget is spent once ``min_iters`` are in.
    Values are prepared outside the timed region.
    """
    for _ in range(budget.warmup):
        await op.prepare(ctx)()
    gc.collect()
    samples: list[float] = []
    deadline = time.perf_counter() + budget.op_seconds
    while len(samples) < budget.max_iters:
        run = op.prepare(ctx)
        start = time.perf_counter_ns()
        await run()
        samples.append((time.perf_counter_ns() - start) / 1e6)
        if len(samples) >= budget.min_iters and time.perf_counter() >= deadline:
            break
    return samples


async def populate(target: Target, values: Values, profile: Profile) -> OpContext:
    """Fill the main account and its peer; the context the ops run on."""
    account, calls = account_writes(values, profile)
    keys = target.keys("acct")
    for call in calls:
        await keys.set(call)
    save = target.save_creds

    async def save_creds(creds: dict[str, Any]) -> None:
        await save("acct", creds)

    await save_creds(account.creds)
    peer_id = "5511900000000.0"
    await target.keys("peer").set({"session": {peer_id: values.session()}})
    return OpContext(keys, target.keys("peer"), account, peer_id, values, save_creds)


async def throughput(target: Target, values: Values, sessions: int, seconds: float) -> float:
    """Key-ops/s with ``sessions`` sessions each looping a 1:1 half-message (get + set)."""
    peer = "5511911111111.0"
    stores = [target.keys(f"tp{sessions}-{n}") for n in range(sessions)]
    await asyncio.gather(*(s.set({"session": {peer: values.session()}}) for s in stores))
    counts = [0] * sessions
    gc.collect()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(n: int) -> None:
        # A clock check, not a stop flag: a store that never suspends (memory) would
        # otherwise starve the task that sets the flag.
        keys, data = stores[n], {"session": {peer: values.session()}}
        while time.perf_counter() < deadline:
            await keys.get("session", [peer])
            await keys.set(data)
            counts[n] += 2

    await asyncio.gather(*(worker(n) for n in range(sessions)))
    return sum(counts) / (time.perf_counter() - start)


async def scaling_session(target: Target, values: Values, size: int) -> list[str]:
    """Fill session ``scale-<size>`` with ``size`` pre-keys; their ids."""
    ids = [str(i) for i in range(1, size + 1)]
    keys = target.keys(f"scale-{size}")
    for start in range(0, size, PREKEY_BATCH):
        chunk = ids[start : start + PREKEY_BATCH]
        await keys.set({"pre-key": {i: values.pre_key() for i in chunk}})
    return ids


async def scaling_rep(
    target: Target, values: Values, size: int, ids: list[str], budget: Budget
) -> dict[str, dict[str, float]]:
    """Single-key get and set latency on random ids of the ``size``-key session."""
    keys, rng = target.keys(f"scale-{size}"), values.rng
    out: dict[str, list[float]] = {"get": [], "set": []}
    deadline = time.perf_counter() + budget.op_seconds
    while len(out["set"]) < budget.scale_iters:
        key_id, value = rng.choice(ids), values.pre_key()
        start = time.perf_counter_ns()
        await keys.get("pre-key", [key_id])
        mid = time.perf_counter_ns()
        await keys.set({"pre-key": {key_id: value}})
        out["get"].append((mid - start) / 1e6)
        out["set"].append((time.perf_counter_ns() - mid) / 1e6)
        if len(out["set"]) >= budget.min_iters and time.perf_counter() >= deadline:
            break
    return {k: summarize(v) for k, v in out.items()}


async def resident(target: Target, seed: int, wanted: int, seconds: float) -> dict[str, Any]:
    """Import up to ``wanted`` typical sessions one by one, stopping after ``seconds``.

    Reports the store time, the size on disk / in Redis per session and the raw payload per
    session (sizes are deltas of the store's footprint before and after).
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload
    values = Values(rng)
    before = await target.footprint()
    store_seconds, payload, imported = 0.0, 0, 0
    deadline = time.perf_counter() + seconds
    while imported < wanted and time.perf_counter() < deadline:
        account, calls = account_writes(values, resident_profile(rng))
        payload += payload_bytes(calls, account.creds)
        sid = f"res-{imported:06d}"
        keys = target.keys(sid)
        start = time.perf_counter()
        for call in calls:
            await keys.set(call)
        await target.save_creds(sid, account.creds)
        store_seconds += time.perf_counter() - start
        imported += 1
    after = await target.footprint()
    out: dict[str, Any] = {
        "wanted": wanted,
        "imported": imported,
        "capped_by_time": imported < wanted,
        "import_seconds": store_seconds,
        "import_ms_per_session": store_seconds / imported * 1000 if imported else None,
        "payload_bytes_per_session": payload / imported if imported else None,
    }
    for kind in ("disk_bytes", "memory_bytes"):
        b, a = before.get(kind), after.get(kind)
        per = (a - b) / imported if imported and a is not None and b is not None else None
        out[f"{kind}_per_session"] = per
        out[f"{kind}_total"] = a
    return out
