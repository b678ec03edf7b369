"""The data-mobility benchmark: copy between stores, backup and restore, at scale.

``baileys-store bench --mobility`` fills a SQLite store with realistic sessions (≈ 800 pre-keys,
100 ``session`` records, 50 sender keys and the creds each, the bench's own value generator),
then measures, each once in this process: ``copy`` SQLite → PostgreSQL (verification included),
``backup`` of the SQLite store to a file, ``restore`` of that file into a fresh PostgreSQL
database, and the peak RSS of the whole process (``ru_maxrss``: the process's high-water mark,
so it bounds every step). Targets (issue 16): copy ≥ 20k keys/s, backup and restore ≥ 50k
keys/s, peak RSS ≤ 200 MB.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._config import StoreConfig
from .._store import AuthStore
from ..integrations._backup import backup, restore
from ..integrations._copy import copy_sessions
from ..observability import NullMetrics
from ._servers import create_postgres_db
from ._workload import Values

PRE_KEYS, SESSIONS, SENDER_KEYS = 800, 100, 50
TARGETS = {"copy": 20_000.0, "backup": 50_000.0, "restore": 50_000.0}
RSS_TARGET_MB = 200.0


@dataclass(frozen=True, slots=True)
class Step:
    """One measured step: what it moved and how fast."""

    name: str
    sessions: int
    keys: int
    seconds: float

    @property
    def keys_per_s(self) -> float:
        """Keys moved per second."""
        return self.keys / self.seconds if self.seconds else 0.0


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def _fill(store: AuthStore, sessions: int, seed: int) -> int:
    """Write ``sessions`` realistic sessions; returns the keys written."""
    values, keys = Values(random.Random(seed)), 0  # noqa: S311 - test data, not secrets
    for n in range(sessions):
        session = store.session(f"s{n:05d}", namespace="bench")
        data: dict[str, dict[str, Any]] = {
            "pre-key": {str(i): values.pre_key() for i in range(1, PRE_KEYS + 1)},
            "session": {f"{5500000 + i}.0": values.session() for i in range(SESSIONS)},
            "sender-key": {f"g{i}@g.us::{n}::0": values.sender_key() for i in range(SENDER_KEYS)},
        }
        await session.keys.set(data)
        await session.save_creds(values.creds())
        keys += PRE_KEYS + SESSIONS + SENDER_KEYS
    return keys


@asynccontextmanager
async def fresh_postgres_db(dsn: str) -> AsyncIterator[str]:
    """A new database on the server of ``dsn`` for one step, dropped afterwards."""
    url, drop = await create_postgres_db(dsn)
    try:
        yield url
    finally:
        await drop()


def _config(url: str) -> StoreConfig:
    return StoreConfig(durable=url, cache=None, create_dirs=True)


async def run_mobility(
    postgres_dsn: str, sessions: int, out: Path, seed: int = 1
) -> dict[str, Any]:
    """Run the three steps; write ``mobility.json`` and ``mobility.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bs-mobility-") as tmp:
        src_url = f"sqlite:///{Path(tmp) / 'source.db'}"
        source = AuthStore(_config(src_url), metrics=NullMetrics())
        await source.open()
        try:
            start = time.perf_counter()
            keys = await _fill(source, sessions, seed)
            steps.append(
                Step("fill (SQLite, reference)", sessions, keys, time.perf_counter() - start)
            )
            async with fresh_postgres_db(postgres_dsn) as copy_url:
                dest = AuthStore(_config(copy_url), metrics=NullMetrics())
                await dest.open()
                try:
                    start = time.perf_counter()
                    report = await copy_sessions(source, dest)
                    seconds = time.perf_counter() - start
                finally:
                    await dest.close()
                if not report.ok:
                    raise RuntimeError(f"copy did not succeed: {report}")
                steps.append(Step("copy SQLite → PostgreSQL", sessions, keys, seconds))
            path = Path(tmp) / "bench.bsb"
            start = time.perf_counter()
            await backup(source, path)
            steps.append(Step("backup SQLite → file", sessions, keys, time.perf_counter() - start))
        finally:
            await source.close()
        async with fresh_postgres_db(postgres_dsn) as restore_url:
            dest = AuthStore(_config(restore_url), metrics=NullMetrics())
            await dest.open()
            try:
                start = time.perf_counter()
                await restore(dest, path)
                seconds = time.perf_counter() - start
            finally:
                await dest.close()
            steps.append(Step("restore file → PostgreSQL", sessions, keys, seconds))
        file_mb = path.stat().st_size / 1e6 if path.exists() else 0.0
    peak = _peak_rss_mb()
    result = {
        "sessions": sessions,
        "keys_per_session": PRE_KEYS + SESSIONS + SENDER_KEYS,
        "backup_file_mb": round(file_mb, 1),
        "peak_rss_mb": round(peak, 1),
        "steps": [asdict(s) | {"keys_per_s": round(s.keys_per_s)} for s in steps],
    }
    (out / "mobility.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "mobility.md").write_text(_table(steps, peak, file_mb, sessions))
    return result


def _table(steps: list[Step], peak: float, file_mb: float, sessions: int) -> str:
    lines = [
        f"Data mobility: {sessions} sessions x {PRE_KEYS + SESSIONS + SENDER_KEYS} keys "
        f"(backup file {file_mb:.1f} MB)",
        "",
        "| step | keys | seconds | keys/s | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for s in steps:
        key = s.name.split(" ", 1)[0]
        goal = TARGETS.get(key)
        met = "—" if goal is None else ("met" if s.keys_per_s >= goal else "missed")
        goal_text = "—" if goal is None else f"≥ {goal:,.0f}"
        rate = f"{s.keys_per_s:,.0f}"
        lines.append(f"| {s.name} | {s.keys:,} | {s.seconds:.2f} | {rate} | {goal_text} | {met} |")
    met = "met" if peak <= RSS_TARGET_MB else "missed"
    lines.append(
        f"| peak RSS (whole process) | | | {peak:.0f} MB | ≤ {RSS_TARGET_MB:.0f} MB | {met} |"
    )
    return "\n".join(lines) + "\n"
