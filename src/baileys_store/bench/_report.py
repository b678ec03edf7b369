"""``results.json`` and ``results.md``: every number, the ratios and the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._goals import evaluate_goals
from ._md import fmt, table
from ._ops import OPS
from ._report_goals import costs_section, goals_section
from ._targets import evaluate, fsync_cost, ok_stores, ratios, stat


def _size(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _header(results: dict[str, Any]) -> list[str]:
    m, o = results["machine"], results["options"]
    ram = f"{m['ram_bytes'] / 2**30:.1f} GiB" if m.get("ram_bytes") else "?"
    servers = ", ".join(f"{k} {v}" for k, v in results.get("servers", {}).items()) or "none"
    return [
        "# baileys-store bench results",
        "",
        f"- Run: {results['started_at']}, wall time {results['wall_seconds']:.0f} s"
        f"{' (quick mode: smoke numbers only)' if o['quick'] else ''}; {o['repeat']} repetition(s),"
        " medians of the per-repetition percentiles are quoted.",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {ram} RAM, {m['os']}.",
        f"- Python {m['python']}, SQLite {m['sqlite']}; servers: {servers}.",
        f"- Account under test: {o['profile']['pre_keys']} pre-keys, {o['profile']['sessions']}"
        f" sessions, {o['profile']['sender_keys']} sender keys, {o['profile']['groups']} groups"
        f" of {o['profile']['group_devices']} devices, {o['profile']['app_state_versions']}"
        " app-state versions.",
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    lines = _header(results)
    lines += ["## Stores", ""]
    lines += table(
        ["store", "kind", "what", "durability", "status"],
        [
            [
                s["name"],
                s["group"],
                s["description"],
                s["sync"],
                s["status"] + (f": {s['reason']}" if s.get("reason") else ""),
            ]
            for s in results["stores"]
        ],
    )
    stores = list(ok_stores(results))
    ops = [op.name for op in OPS]
    lines += ["## Latency per operation (ms)", ""]
    lines += table(["op", "what"], [[f"`{op.name}`", op.doc] for op in OPS])
    for key in ("p50", "p95", "p99"):
        lines += [f"### {key}", ""]
        lines += table(
            ["store", *ops], [[s["name"], *(fmt(stat(s, op, key)) for op in ops)] for s in stores]
        )
    for base in ("pyaileys-folder", "session-blob"):
        faster = ratios(results, base)
        if faster:
            lines += [f"## Times faster than `{base}` (its p50 / store p50, same run)", ""]
            lines += table(
                ["store", *ops], [[n, *(fmt(r.get(op)) for op in ops)] for n, r in faster.items()]
            )
    cost = fsync_cost(results)
    if cost:
        lines += ["## Cost of fsync-on-commit (SQLite FULL vs NORMAL, p50)", ""]
        lines += table(
            ["pair", "op", "NORMAL ms", "FULL ms", "fsync adds ms", "ratio"],
            [
                [
                    c["pair"],
                    c["op"],
                    fmt(c["normal_ms"]),
                    fmt(c["full_ms"]),
                    fmt(c["delta_ms"]),
                    fmt(c["ratio"]),
                ]
                for c in cost
            ],
        )
    conc = results["options"]["concurrency"]
    lines += ["## Throughput (key-ops/s, 1:1 get+set loops, one session each)", ""]
    lines += table(
        ["store", *(f"{c} sessions" for c in conc)],
        [
            [s["name"], *(fmt(s.get("throughput", {}).get(str(c), {}).get("median")) for c in conc)]
            for s in stores
        ],
    )
    lines += _scaling(stores) + _resident(stores) + _floor(results, stores)
    lines += _round_trips(stores) + _signal(stores) + _targets(results)
    lines += costs_section(results) + goals_section(results)
    lines += [
        "## Plots",
        "",
        "![latency](latency.png)",
        "",
        "![scaling](scaling.png)",
        "",
        "![throughput](throughput.png)",
        "",
        "![resident](resident.png)",
        "",
    ]
    return "\n".join(lines)


def _scaling(stores: list[dict[str, Any]]) -> list[str]:
    sizes = sorted({k for s in stores for k in s.get("scaling", {})}, key=int)
    if not sizes:
        return []
    head = ["store", *(f"get @{int(n):,}" for n in sizes), *(f"set @{int(n):,}" for n in sizes)]
    rows = [
        [
            s["name"],
            *(
                fmt(s["scaling"].get(n, {}).get(k, {}).get("p50"))
                for k in ("get", "set")
                for n in sizes
            ),
        ]
        for s in stores
        if s.get("scaling")
    ]
    return ["## Scaling: per-key p50 (ms) by keys in the session", "", *table(head, rows)]


def _resident(stores: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            s["name"],
            f"{r['imported']}/{r['wanted']}" + (" (time cap)" if r["capped_by_time"] else ""),
            fmt(r["import_ms_per_session"]),
            _size(r["payload_bytes_per_session"]),
            _size(r["disk_bytes_per_session"]),
            _size(r["memory_bytes_per_session"]),
        ]
        for s in stores
        if (r := s.get("resident"))
    ]
    if not rows:
        return []
    return [
        "## Resident sessions (typical accounts imported one by one)",
        "",
        *table(
            [
                "store",
                "imported",
                "import ms/session",
                "raw payload/session",
                "disk/session",
                "Redis memory/session",
            ],
            rows,
        ),
    ]


def _floor(results: dict[str, Any], stores: list[dict[str, Any]]) -> list[str]:
    floor = results.get("floor")
    if not floor:
        return ["## Redis floor", "", "Not measured (no Redis URL given or it did not answer).", ""]
    benches = [floor.get(k) for k in ("redis_benchmark_c1", "redis_benchmark_c50")]
    rows = [[f"`{b['command']}`", fmt(b["p50_ms"]), "-"] for b in benches if b and "p50_ms" in b]
    names = ("redis_py_async_get", "redis_py_sync_get", "redis_py_async_evalsha")
    clients = [(k, floor.get(k)) for k in (*names, "redis_py_async_get_set")]
    rows += [[k.replace("_", " "), fmt(b["p50"]), fmt(b["p99"])] for k, b in clients if b]
    base = (floor.get("redis_py_async_get") or {}).get("p50")
    for s in stores:
        if s["cache"] is not None or s["durable"] == "redis":
            p50 = stat(s, "get")
            ratio = f" ({fmt(p50 / base)}x redis-py)" if p50 and base else ""
            rows.append([f"our `get` on {s['name']}{ratio}", fmt(p50), fmt(stat(s, "get", "p99"))])
    return ["## Redis floor and our cache-hit get", "", *table(["what", "p50 ms", "p99 ms"], rows)]


def _round_trips(stores: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for s in stores:
        if trips := s.get("round_trips"):
            out += [f"## MongoDB commands per call ({s['name']}, pymongo command monitoring)", ""]
            out += table(
                ["op", "commands"],
                [[op, ", ".join(f"{k}={v}" for k, v in c.items())] for op, c in trips.items()],
            )
    return out


def _signal(stores: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            s["name"],
            fmt(g["setup_ms"]),
            fmt(g["roundtrip_1to1"]["p50"]),
            fmt(g["roundtrip_1to1"]["p99"]),
            fmt(g["group_message"]["p50"]),
        ]
        for s in stores
        if (g := s.get("signal"))
    ]
    if not rows:
        return []
    return [
        "## pyaileys' real Signal stack on each store (ms)",
        "",
        *table(["store", "X3DH set-up", "1:1 round trip p50", "p99", "group msg p50"], rows),
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    rows = results.get("targets") or evaluate(results)
    lines = [
        "## Targets (issue 6), evaluated on this run",
        "",
        "Cache-hit targets are judged on every store with a cache (L1, Redis, in-process); "
        "write-through targets on the write-through hybrid rows only.",
        "",
    ]
    lines += table(
        ["target", "store", "measured", "verdict", "note"],
        [
            [
                r["target"],
                r["store"],
                f"{fmt(r['value'])} {r['unit']}" if r["value"] is not None else "-",
                r["verdict"],
                r["note"],
            ]
            for r in rows
        ],
    )
    met = sum(1 for r in rows if r["met"])
    judged = sum(1 for r in rows if r["met"] is not None)
    return [*lines, f"{met} of {judged} target checks met.", ""]


def write_reports(results: dict[str, Any], out: Path) -> None:
    """Write ``results.json`` and ``results.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = evaluate(results)
    results["goals"] = evaluate_goals(results)
    results["ratios"] = {b: ratios(results, b) for b in ("pyaileys-folder", "session-blob")}
    results["fsync_cost"] = fsync_cost(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
