"""Counters of ``baileys-store demo``: a counting key-store wrapper, latencies, report tables."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.table import Table


class _KeyStore(Protocol):
    async def get(self, key_type: str, ids: list[str]) -> dict[str, Any]: ...

    async def set(self, data: Mapping[str, Mapping[str, Any | None]]) -> None: ...

    async def clear(self) -> None: ...


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (0.0 when empty)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


@dataclass
class DemoStats:
    """Everything the demo counts. Latencies are in milliseconds, per operation name."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @contextmanager
    def timed(self, op: str) -> Iterator[None]:
        """Record the duration of the block under ``op``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latencies[op].append((time.perf_counter() - start) * 1000)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        self.counts[name] += n


class CountingKeyStore:
    """Wraps a session's key store: times and counts every call, remembers the live ids.

    ``live`` (type → ids written and not deleted since) lets the demo read back exactly the
    records it left in the store, to sum their stored size.
    """

    __slots__ = ("_inner", "_stats", "live")

    def __init__(self, inner: _KeyStore, stats: DemoStats) -> None:
        self._inner = inner
        self._stats = stats
        self.live: dict[str, set[str]] = defaultdict(set)

    async def get(self, key_type: str, ids: list[str]) -> dict[str, Any]:
        """Time and count a ``get``."""
        with self._stats.timed("keys.get"):
            found = await self._inner.get(key_type, ids)
        self._stats.add("get calls")
        self._stats.add("ids read", len(ids))
        return found

    async def set(self, data: Mapping[str, Mapping[str, Any | None]]) -> None:
        """Time and count a ``set``; track which ids stay stored."""
        with self._stats.timed("keys.set"):
            await self._inner.set(data)
        self._stats.add("set calls")
        for key_type, items in data.items():
            for key_id, value in items.items():
                if value is None:
                    self.live[key_type].discard(str(key_id))
                    self._stats.add("records deleted")
                else:
                    self.live[key_type].add(str(key_id))
                    self._stats.add("records written")

    async def clear(self) -> None:
        """Clear every key of the session."""
        await self._inner.clear()
        self.live.clear()


def summary_table(rows: list[tuple[str, str]], title: str) -> Table:
    """A two-column table of ``(what, value)`` rows."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for what, value in rows:
        table.add_row(what, value)
    return table


def latency_table(stats: DemoStats) -> Table:
    """Per-operation count and p50 / p99 / max latency (ms)."""
    table = Table(title="Latency per operation (ms, includes store I/O)", title_justify="left")
    table.add_column("operation")
    for name in ("count", "p50", "p99", "max"):
        table.add_column(name, justify="right")
    for op, samples in stats.latencies.items():
        table.add_row(
            op,
            str(len(samples)),
            f"{percentile(samples, 50):.2f}",
            f"{percentile(samples, 99):.2f}",
            f"{max(samples):.2f}",
        )
    return table


def human_bytes(n: int) -> str:
    """``n`` bytes as B / KiB / MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.2f} MiB"
