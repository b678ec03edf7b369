"""Run every store through every measurement (repetitions interleaved), with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._config import redact_url
from ._costs import measure_costs
from ._machine import machine_info
from ._measure import (
    FULL,
    QUICK_BUDGET,
    Budget,
    populate,
    resident,
    scaling_rep,
    scaling_session,
    throughput,
    time_op,
)
from ._ops import OPS
from ._servers import measure_floor, mongo_counter, probe, server_versions
from ._signal import signal_run
from ._specs import SPECS, StoreSpec
from ._stats import median_of, summarize
from ._stores import BenchEnv, SkipError, Target, open_target
from ._workload import Values


@dataclass(slots=True)
class BenchOptions:
    """Options of one bench run (the CLI's flags).

    Attributes:
        out: Output folder for ``results.json``, ``results.md`` and the PNGs.
        quick: Seconds-long smoke run (tiny budgets, small account).
        repeat: Repetitions of the latency and throughput runs; medians are quoted.
        stores: Store names (exact) or prefixes (``sqlite``: every SQLite row); empty: all.
        urls: ``redis`` / ``postgres`` / ``mongodb`` server URLs (``None``: not given).
        sessions: Resident sessions to import per store (``None``: 10 quick, 1000 full).
        concurrency: Concurrent sessions for the throughput runs.
        seed: RNG seed of the workload.
        signal: Also drive pyaileys' real Signal stack.
        progress: Show a progress bar on stderr.
    """

    out: Path = Path("bench-results")
    quick: bool = False
    repeat: int = 3
    stores: tuple[str, ...] = ()
    urls: dict[str, str | None] = field(default_factory=dict)
    sessions: int | None = None
    concurrency: tuple[int, ...] = (1, 8, 64, 256)
    seed: int = 1
    signal: bool = True
    progress: bool = True

    def selected(self) -> list[StoreSpec]:
        """The store specs this run covers."""
        if not self.stores:
            return list(SPECS)
        names = {s.name for s in SPECS}

        def wanted(name: str) -> bool:
            # An exact name selects that row only; any other word selects a family by prefix.
            return any(name == w if w in names else name.startswith(w) for w in self.stores)

        return [s for s in SPECS if wanted(s.name)]


def _units(opts: BenchOptions, budget: Budget, spec: StoreSpec) -> int:
    return (
        1
        + opts.repeat * (len(OPS) + len(opts.concurrency))
        + len(budget.scale_sizes)
        + int(opts.signal)
        + int(spec.resident)
    )


class _Bar:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self._p = progress
        self._task = progress.add_task("bench", total=total) if progress else None
        self.done = 0

    def step(self, what: str, advance: int = 1) -> None:
        self.done += advance
        if self._p is not None and self._task is not None:
            self._p.update(self._task, advance=advance, description=what)

    def complete(self) -> None:
        """Fill the bar (skipped or failed stores leave their steps undone)."""
        if self._p is not None and self._task is not None:
            total = self._p.tasks[self._task].total
            self._p.update(self._task, completed=total, description="done")


@dataclass(slots=True)
class _Live:
    """A store under test while the run goes on."""

    spec: StoreSpec
    result: dict[str, Any]
    target: Target | None = None
    ctx: Any = None
    seconds: float = 0.0

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, SkipError):
            self.result.update(status="skipped", reason=str(exc))
        else:
            self.result.update(
                status="failed",
                reason=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=8),
            )

    @property
    def running(self) -> bool:
        return self.result["status"] == "ok" and self.target is not None


@contextlib.asynccontextmanager
async def _phase(live: _Live) -> AsyncIterator[None]:
    """Time a phase of one store; an error marks the store failed (or skipped), never the run."""
    start = time.perf_counter()
    try:
        yield
    except Exception as exc:  # reported in the results; the other stores go on
        live.fail(exc)
        if live.target is not None:
            with contextlib.suppress(Exception):
                await live.target.close()
            live.target = None
    finally:
        live.seconds += time.perf_counter() - start
        live.result["seconds"] = live.seconds


async def _open(live: _Live, env: BenchEnv, opts: BenchOptions, budget: Budget) -> None:
    async with _phase(live):
        live.target = await open_target(live.spec, env, "main")
        values = Values(random.Random(opts.seed))  # noqa: S311 - a reproducible workload
        live.ctx = await populate(live.target, values, budget.profile)


async def _rep(live: _Live, opts: BenchOptions, budget: Budget, bar: _Bar, rep: int) -> None:
    """One repetition of every op and every concurrency level on one store."""
    latency: dict[str, Any] = live.result.setdefault("latency", {})
    tput: dict[str, Any] = live.result.setdefault("throughput", {})
    async with _phase(live):
        for op in OPS:
            bar.step(f"{live.spec.name}: {op.name} (rep {rep + 1})")
            samples = await time_op(op, live.ctx, budget)
            entry = latency.setdefault(op.name, {"samples_ms": [], "reps": []})
            entry["samples_ms"].append([round(x, 4) for x in samples])
            entry["reps"].append(summarize(samples))
        for c in opts.concurrency:
            bar.step(f"{live.spec.name}: throughput x{c} (rep {rep + 1})")
            assert live.target is not None
            rate = await throughput(live.target, live.ctx.values, c, budget.tp_seconds)
            tput.setdefault(str(c), {"reps": []})["reps"].append(rate)


async def _finish(
    live: _Live, env: BenchEnv, opts: BenchOptions, budget: Budget, bar: _Bar
) -> None:
    """Summaries, then the per-store phases: round trips, scaling, Signal stack, resident."""
    spec, result = live.spec, live.result
    for entry in result.get("latency", {}).values():
        entry["summary"] = median_of(entry["reps"])
    for entry in result.get("throughput", {}).values():
        entry["median"] = statistics.median(entry["reps"])
    async with _phase(live):
        target, values = live.target, live.ctx.values
        assert target is not None
        if spec.durable == "mongodb":
            result["round_trips"] = await _round_trips(live.ctx)
        scaling: dict[str, Any] = result.setdefault("scaling", {})
        for size in budget.scale_sizes:
            bar.step(f"{spec.name}: scaling {size} keys")
            ids = await scaling_session(target, values, size)
            reps = [
                await scaling_rep(target, values, size, ids, budget) for _ in range(opts.repeat)
            ]
            scaling[str(size)] = {k: median_of([r[k] for r in reps]) for k in ("get", "set")}
        if opts.signal:
            bar.step(f"{spec.name}: pyaileys Signal stack")
            result["signal"] = await signal_run(target, budget.signal_messages, "main")
        live.target = None
        await target.close()
    if spec.resident and result["status"] == "ok":
        bar.step(f"{spec.name}: resident sessions")
        wanted = opts.sessions if opts.sessions is not None else (10 if opts.quick else 1000)
        async with _phase(live):
            res_target = await open_target(spec, env, "resident")
            try:
                result["resident"] = await resident(
                    res_target, opts.seed + 1, wanted, budget.resident_seconds
                )
            finally:
                await res_target.close()


async def _run_stores(
    specs: list[StoreSpec], env: BenchEnv, opts: BenchOptions, budget: Budget, bar: _Bar
) -> list[dict[str, Any]]:
    """Open every store, run the repetitions interleaved, then the per-store phases.

    Each repetition visits the stores in a shuffled order, so a noisy minute on a shared
    machine does not land on all repetitions of one store.
    """
    lives = [
        _Live(
            spec,
            {
                "name": spec.name,
                "group": spec.group,
                "description": spec.description,
                "durable": spec.durable,
                "cache": spec.cache,
                "sync": spec.sync,
                "write_mode": spec.options.get("write_mode", "write-through"),
                "status": "ok",
                "reason": None,
            },
        )
        for spec in specs
    ]
    for live in lives:
        bar.step(f"{live.spec.name}: open + populate")
        await _open(live, env, opts, budget)
    for rep in range(opts.repeat):
        order = list(lives)
        random.Random(opts.seed + rep).shuffle(order)  # noqa: S311 - reproducible order
        for live in order:
            if live.running:
                await _rep(live, opts, budget, bar, rep)
    for live in lives:
        if live.running:
            await _finish(live, env, opts, budget, bar)
    return [live.result for live in lives]


async def _round_trips(ctx: Any) -> dict[str, dict[str, int]]:
    """MongoDB commands sent by one call of each op (pymongo command monitoring)."""
    counter, out = mongo_counter(), {}
    for op in OPS:
        run = op.prepare(ctx)
        counter.counts = {}
        counter.armed = True
        try:
            await run()
        finally:
            counter.armed = False
        out[op.name] = dict(counter.counts)
    return out


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description:<42}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the bench; the returned dict is what ``results.json`` holds (minus the report)."""
    budget = QUICK_BUDGET if opts.quick else FULL
    started = time.time()
    wall = time.perf_counter()
    specs = opts.selected()
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "options": {
            "quick": opts.quick,
            "repeat": opts.repeat,
            "seed": opts.seed,
            "concurrency": list(opts.concurrency),
            "stores": list(opts.stores),
            "sessions": opts.sessions,
            "signal": opts.signal,
            "urls": {k: redact_url(v) if v else v for k, v in opts.urls.items()},
            "budget": {k: v for k, v in dataclasses.asdict(budget).items() if k != "profile"},
            "profile": dataclasses.asdict(budget.profile),
        },
        "machine": machine_info(),
    }
    reachable: dict[str, str | None] = {
        k: v for k, v in opts.urls.items() if v and await probe(v) is None
    }
    results["servers"] = await server_versions(reachable)
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    # Files go beside the output, on the disk the user chose (fsync costs differ per disk).
    opts.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".bench-work-", dir=opts.out) as tmp,
        _progress(opts.progress) as prog,
    ):
        env = BenchEnv(Path(tmp), namespace, dict(opts.urls))
        bar = _Bar(prog, sum(_units(opts, budget, s) for s in specs) + 1)
        results["stores"] = await _run_stores(specs, env, opts, budget, bar)
        bar.step("redis floor")
        if reachable.get("redis"):
            results["floor"] = await measure_floor(str(reachable["redis"]), budget.floor_samples)
            results["costs"] = await measure_costs(
                str(reachable["redis"]), min(300, budget.floor_samples)
            )
        bar.complete()
    results["wall_seconds"] = time.perf_counter() - wall
    return results


def run_bench_sync(opts: BenchOptions) -> dict[str, Any]:
    """:func:`run_bench` in a fresh event loop."""
    return asyncio.run(run_bench(opts))
