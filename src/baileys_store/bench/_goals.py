"""Issue 14's targets (the hybrid and server paths), judged on the numbers of this run.

Every ratio uses floors measured in the same run (the pyaileys folder store, bare redis-py
``GET``/``EVALSHA``/``GET+SET``), so a noisy machine moves both sides together. The counted
costs (commands, tasks, loop iterations, loop CPU per call) come from :mod:`._costs`.
"""

from __future__ import annotations

from typing import Any

from ._targets import find, ok_stores, ratio_of, row, stat

WB_VS_EVALSHA = 1.5
WB_LOOP_X = 4.0
WT_NORMAL_LOOP_X = 2.0
WT_FULL_EXTRA_MS = 0.15
REDIS_LOOP_X = 1.5
NOL1_GET_X = 1.3
BATCH_MS = 5.0
BATCH_PG_MS = 8.0
FOLDER_BATCH_X = 50.0
KOPS = 10_000.0
WB_CPU_US = 200.0
WB_TASKS = 1
WB_TURNS = 5


def _floor(results: dict[str, Any], name: str) -> float | None:
    value = ((results.get("floor") or {}).get(name) or {}).get("p50")
    return float(value) if value is not None else None


def _write_behind(results: dict[str, Any]) -> list[dict[str, Any]]:
    folder = find(results, "pyaileys-folder")
    evalsha = _floor(results, "redis_py_async_evalsha")
    rows = []
    for name in ("redis/sqlite-wb", "redis/postgres-wb"):
        s = find(results, name)
        if s is None:
            continue
        rows.append(
            row(
                f"1. write-behind set p50 <= {WB_VS_EVALSHA}x bare EVALSHA",
                name,
                ratio_of(stat(s, "set"), evalsha),
                WB_VS_EVALSHA,
                "x",
            )
        )
        rows.append(
            row(
                f"1. write-behind loop >= {WB_LOOP_X:g}x the folder store",
                name,
                ratio_of(stat(folder, "msg_1to1"), stat(s, "msg_1to1")),
                WB_LOOP_X,
                "x",
                at_least=True,
            )
        )
    cost = (results.get("costs") or {}).get("write-behind", {}).get("set")
    if cost:
        commands = cost["commands"]
        rows += [
            row(
                "1. write-behind set: commands on the wire",
                "write-behind",
                float(len(commands)),
                1.0,
                "commands",
                note=" ".join(commands),
            ),
            row("1. write-behind set: tasks", "write-behind", cost["tasks"], WB_TASKS, "tasks"),
            row(
                "1. write-behind set: loop iterations",
                "write-behind",
                cost["turns"],
                WB_TURNS,
                "turns",
            ),
            row(
                f"1. write-behind set: loop CPU <= {WB_CPU_US:g} us",
                "write-behind",
                cost["loop_cpu_us"],
                WB_CPU_US,
                "us",
            ),
        ]
    return rows


def _write_through(results: dict[str, Any]) -> list[dict[str, Any]]:
    folder = find(results, "pyaileys-folder")
    rows = []
    normal = find(results, "redis/sqlite-normal")
    if normal is not None:
        rows.append(
            row(
                f"2. write-through over SQLite NORMAL loop >= {WT_NORMAL_LOOP_X:g}x folder",
                normal["name"],
                ratio_of(stat(folder, "msg_1to1"), stat(normal, "msg_1to1")),
                WT_NORMAL_LOOP_X,
                "x",
                at_least=True,
            )
        )
    full, alone = find(results, "redis/sqlite"), stat(find(results, "sqlite-full"), "set")
    if full is not None and alone is not None:
        rows.append(
            row(
                f"2. write-through over SQLite FULL set p50 <= SQLite FULL set + "
                f"{WT_FULL_EXTRA_MS} ms",
                full["name"],
                stat(full, "set"),
                alone + WT_FULL_EXTRA_MS,
                "ms",
                note=f"SQLite FULL alone: {alone:.3f} ms",
            )
        )
    return rows


def _reads(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    redis_only, get_set = find(results, "redis"), _floor(results, "redis_py_async_get_set")
    if redis_only is not None:
        # A 1:1 message is a session get + set on each side: two redis-py GET+SET pairs.
        rows.append(
            row(
                f"3. Redis-only loop <= {REDIS_LOOP_X}x the redis-py floor (2 GET+SET)",
                "redis",
                ratio_of(stat(redis_only, "msg_1to1"), 2 * get_set if get_set else None),
                REDIS_LOOP_X,
                "x",
            )
        )
    nol1 = find(results, "redis/sqlite-noL1")
    if nol1 is not None:
        rows.append(
            row(
                f"3. no-L1 cache-hit get <= {NOL1_GET_X}x bare EVALSHA",
                nol1["name"],
                ratio_of(stat(nol1, "get"), _floor(results, "redis_py_async_evalsha")),
                NOL1_GET_X,
                "x",
            )
        )
    return rows


def _batches(results: dict[str, Any]) -> list[dict[str, Any]]:
    folder = find(results, "pyaileys-folder")
    rows = []
    for s in ok_stores(results):
        if s["group"] != "ours" or s["durable"] == "mongodb" or s["durable"] == "memory":
            continue
        pg, behind = s["durable"] == "postgres", s.get("write_mode") == "write-behind"
        # PostgreSQL's limit where the call waits for it: every set but write-behind's, and
        # the gets of PostgreSQL alone (a hybrid's get is a cache hit).
        limits = {
            "batch_set_812": BATCH_PG_MS if pg and not behind else BATCH_MS,
            "batch_get_812": BATCH_PG_MS if pg and s["cache"] is None else BATCH_MS,
        }
        for op, limit in limits.items():
            rows.append(row(f"4. {op} p50 <= {limit:g} ms", s["name"], stat(s, op), limit, "ms"))
            rows.append(
                row(
                    f"4. {op} >= {FOLDER_BATCH_X:g}x the folder store",
                    s["name"],
                    ratio_of(stat(folder, op), stat(s, op)),
                    FOLDER_BATCH_X,
                    "x",
                    at_least=True,
                )
            )
    return rows


def _throughput(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in ("redis", "redis/sqlite", "redis/postgres"):
        s = find(results, name)
        top = (s or {}).get("throughput", {}).get("64")
        if s is not None:
            rows.append(
                row(
                    "5. >= 10k key-ops/s with 64 sessions",
                    name,
                    top["median"] if top else None,
                    KOPS,
                    "key-ops/s",
                    at_least=True,
                )
            )
    return rows


def evaluate_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per issue-14 target this run can judge (``met`` None: not measured)."""
    return [
        *_write_behind(results),
        *_write_through(results),
        *_reads(results),
        *_batches(results),
        *_throughput(results),
    ]
