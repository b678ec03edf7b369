"""The issue's performance targets, evaluated on the numbers of this run (never hard-coded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BATCH_MS = 10.0
SCALE_FACTOR = 1.5
KOPS_MIN = 10_000.0
FOLDER_BATCH_X = 50.0
FOLDER_MSG_X = 2.0
MONGO_NOTE = "SecantusDB (a Python server): held to round trips, not milliseconds"


def ok_stores(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Stores that ran (status ``ok``)."""
    return (s for s in results["stores"] if s["status"] == "ok")


def stat(store: dict[str, Any] | None, op: str, key: str = "p50") -> float | None:
    """A summarized latency (ms) of ``op``, or ``None``."""
    if store is None:
        return None
    value = store.get("latency", {}).get(op, {}).get("summary", {}).get(key)
    return float(value) if value is not None else None


def find(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The store named ``name`` if it ran."""
    return next((s for s in ok_stores(results) if s["name"] == name), None)


def row(
    target: str,
    store: str,
    value: float | None,
    limit: float,
    unit: str,
    *,
    at_least: bool = False,
    note: str = "",
) -> dict[str, Any]:
    """One judged check: ``value`` against ``limit`` (a minimum when ``at_least``)."""
    met: bool | None = None
    verdict = "not measured"
    if value is not None:
        met = value >= limit if at_least else value <= limit
        if met:
            verdict = "met"
        elif at_least:
            verdict = f"missed: {value / limit:.0%} of the minimum" if limit else "missed"
        else:
            verdict = f"missed by {value / limit - 1:.0%}"
    return {
        "target": target,
        "store": store,
        "value": value,
        "limit": limit,
        "unit": unit,
        "at_least": at_least,
        "met": met,
        "verdict": verdict,
        "note": note,
    }


def ratio_of(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _cache_rows(ours: list[dict[str, Any]], floor: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    redis_get = (floor.get("redis_py_async_get") or {}).get("p50")
    for s in ours:
        if s["cache"] is None:
            continue
        rows.append(row("cache-hit get p50 <= 0.2 ms", s["name"], stat(s, "get"), 0.2, "ms"))
        rows.append(row("cache-hit get p99 <= 0.5 ms", s["name"], stat(s, "get", "p99"), 0.5, "ms"))
        if s["cache"] == "redis":
            rows.append(
                row(
                    "cache-hit get <= 2x bare redis-py GET",
                    s["name"],
                    ratio_of(stat(s, "get"), redis_get),
                    2.0,
                    "x",
                )
            )
    return rows


def _write_through_rows(ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in ours:
        if s.get("write_mode", "write-through") != "write-through":
            continue  # write-behind rows are reported, not judged against write-through
        if s["cache"] == "redis" and s["durable"] == "sqlite":
            rows.append(
                row(
                    "write-through set over SQLite p50 <= 0.6 ms",
                    s["name"],
                    stat(s, "set"),
                    0.6,
                    "ms",
                )
            )
            rows.append(
                row(
                    "write-through set over SQLite p99 <= 2 ms",
                    s["name"],
                    stat(s, "set", "p99"),
                    2.0,
                    "ms",
                )
            )
        if s["cache"] == "redis" and s["durable"] == "postgres":
            rows.append(
                row(
                    "write-through set over PostgreSQL p50 <= 1.5 ms",
                    s["name"],
                    stat(s, "set"),
                    1.5,
                    "ms",
                )
            )
    return rows


def _key_commands(op: str, trips: dict[str, int]) -> tuple[str, float | None]:
    """Commands on the keys collection: bulk writes for a set, queries (+ getMore) for a get."""
    if not trips:
        return ("round trip", None)
    if op.startswith("batch_set"):
        kinds, what = ("update", "insert", "delete"), "bulk write on the keys collection"
    else:
        kinds, what = ("find", "aggregate", "getMore"), "query for the keys"
    total = sum(
        n
        for name, n in trips.items()
        if name.split(":")[0] in kinds and (name.startswith("getMore") or name.endswith("keys"))
    )
    return what, float(total)


def _batch_rows(ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in ours:
        mongo = s["durable"] == "mongodb"
        for op in ("batch_set_812", "batch_get_812"):
            if mongo:
                trips = s.get("round_trips", {}).get(op, {})
                what, value = _key_commands(op, trips)
                rows.append(
                    row(
                        f"{op}: one {what} (MongoDB)",
                        s["name"],
                        value,
                        1.0,
                        "commands",
                        note="all: " + ", ".join(f"{k}={v}" for k, v in trips.items()),
                    )
                )
            rows.append(
                row(
                    f"{op} p50 <= {BATCH_MS:g} ms",
                    s["name"],
                    stat(s, op),
                    BATCH_MS,
                    "ms",
                    note=MONGO_NOTE if mongo else "",
                )
            )
    return rows


def _scaling_rows(ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in ours:
        scaling = s.get("scaling", {})
        if len(scaling) < 2:
            continue
        sizes = sorted(scaling, key=int)
        small, big = scaling[sizes[0]], scaling[sizes[-1]]
        rows.extend(
            row(
                f"per-key {kind} at {int(sizes[-1]):,} keys <= {SCALE_FACTOR}x at "
                f"{int(sizes[0]):,}",
                s["name"],
                ratio_of(big[kind]["p50"], small[kind]["p50"]),
                SCALE_FACTOR,
                "x",
            )
            for kind in ("get", "set")
        )
    return rows


def _throughput_rows(ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in ours:
        tput = s.get("throughput", {})
        if tput:
            top = max(tput, key=int)
            rows.append(
                row(
                    f">= 10k key-ops/s with {top} sessions",
                    s["name"],
                    tput[top]["median"],
                    KOPS_MIN,
                    "key-ops/s",
                    at_least=True,
                    note=MONGO_NOTE if s["durable"] == "mongodb" else "",
                )
            )
    return rows


def _folder_rows(results: dict[str, Any], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    folder = find(results, "pyaileys-folder")
    for s in ours:
        if s["durable"] != "sqlite" or s["sync"] != "no-fsync":
            continue  # equal durability: the folder store never fsyncs
        rows.extend(
            row(
                f"{op}: >= {need:g}x faster than the pyaileys folder",
                s["name"],
                ratio_of(stat(folder, op), stat(s, op)),
                need,
                "x",
                at_least=True,
            )
            for op, need in (
                ("batch_set_812", FOLDER_BATCH_X),
                ("batch_get_812", FOLDER_BATCH_X),
                ("msg_1to1", FOLDER_MSG_X),
            )
        )
    return rows


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, store) the run can judge."""
    ours = [s for s in ok_stores(results) if s["group"] == "ours"]
    return [
        *_cache_rows(ours, results.get("floor") or {}),
        *_write_through_rows(ours),
        *_batch_rows(ours),
        *_scaling_rows(ours),
        *_throughput_rows(ours),
        *_folder_rows(results, ours),
    ]


def ratios(results: dict[str, Any], baseline: str) -> dict[str, dict[str, float | None]]:
    """``baseline p50 / store p50`` per store and op (how many times faster than it)."""
    base = find(results, baseline)
    out: dict[str, dict[str, float | None]] = {}
    if base is None:
        return out
    for s in ok_stores(results):
        if s["name"] != baseline:
            out[s["name"]] = {
                op: ratio_of(stat(base, op), stat(s, op)) for op in s.get("latency", {})
            }
    return out


def fsync_cost(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What fsync-on-commit costs: FULL minus NORMAL, for each SQLite pair and write op."""
    rows: list[dict[str, Any]] = []
    for suffix in ("", "+mem"):
        full = find(results, f"sqlite-full{suffix}")
        normal = find(results, f"sqlite-normal{suffix}")
        if full is None or normal is None:
            continue
        for op in ("set", "batch_set_812", "msg_1to1", "creds_burst"):
            f, n = stat(full, op), stat(normal, op)
            if f is not None and n is not None:
                rows.append(
                    {
                        "pair": f"sqlite-full{suffix} vs sqlite-normal{suffix}",
                        "op": op,
                        "normal_ms": n,
                        "full_ms": f,
                        "delta_ms": f - n,
                        "ratio": f / n,
                    }
                )
    return rows
