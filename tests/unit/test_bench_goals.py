"""Issue 14's bench targets are judged from the run's own numbers (synthetic results here)."""

from __future__ import annotations

import json
from typing import Any

from baileys_store.bench._goals import evaluate_goals
from baileys_store.bench._report_goals import costs_section, goals_section


def _store(name: str, durable: str, cache: str | None, mode: str, **p50: float) -> dict[str, Any]:
    return {
        "name": name,
        "group": "baseline" if name == "pyaileys-folder" else "ours",
        "status": "ok",
        "durable": durable,
        "cache": cache,
        "write_mode": mode,
        "latency": {op: {"summary": {"p50": v}} for op, v in p50.items()},
        "throughput": {"64": {"median": 12_000.0}},
    }


def _results() -> dict[str, Any]:
    wt, wb = "write-through", "write-behind"
    batch = {"batch_set_812": 4.0, "batch_get_812": 2.0}
    stores = [
        _store(
            "pyaileys-folder",
            "folder",
            None,
            wt,
            msg_1to1=1.6,
            batch_set_812=230.0,
            batch_get_812=180.0,
        ),
        _store("sqlite-full", "sqlite", None, wt, set=0.5, **batch),
        _store("redis/sqlite", "sqlite", "redis", wt, set=0.6, **batch),
        _store("redis/sqlite-normal", "sqlite", "redis", wt, msg_1to1=0.7, **batch),
        _store("redis/sqlite-noL1", "sqlite", "redis", wt, get=0.2, **batch),
        _store("redis/sqlite-wb", "sqlite", "redis", wb, set=0.25, msg_1to1=0.35, **batch),
        _store("redis", "redis", None, wt, msg_1to1=0.9, **batch),
        _store("postgres", "postgres", None, wt, batch_set_812=7.0, batch_get_812=6.0),
    ]
    cost = {
        "commands": ["EVALSHA"],
        "tasks": 0,
        "turns": 2,
        "loop_cpu_us": 150.0,
        "loop_cpu_us_p90": 180.0,
    }
    return {
        "stores": stores,
        "floor": {
            "redis_py_async_evalsha": {"p50": 0.2},
            "redis_py_async_get_set": {"p50": 0.3},
        },
        "costs": {"write-behind": {"set": cost, "get": dict(cost, commands=[])}},
    }


def _by(rows: list[dict[str, Any]], start: str, store: str) -> dict[str, Any]:
    return next(r for r in rows if r["target"].startswith(start) and r["store"] == store)


def test_every_goal_is_judged_from_the_numbers() -> None:
    results = _results()
    rows = evaluate_goals(results)
    assert all(r["met"] is not None for r in rows), [r for r in rows if r["met"] is None]
    assert _by(rows, "1. write-behind set p50", "redis/sqlite-wb")["value"] == 1.25
    assert _by(rows, "1. write-behind loop", "redis/sqlite-wb")["met"]  # 1.6 / 0.35 = 4.6x
    assert _by(rows, "2. write-through over SQLite FULL", "redis/sqlite")["limit"] == 0.65
    redis_loop = _by(rows, "3. Redis-only loop", "redis")
    assert redis_loop["value"] == 1.5  # 0.9 / (2 * 0.3)
    assert redis_loop["met"]
    assert _by(rows, "4. batch_set_812 p50 <= 8", "postgres")["met"]  # PostgreSQL's limit
    assert not _by(rows, "4. batch_set_812 >= 50x", "postgres")["met"]  # 230 / 7 = 33x
    # Change a number and the verdict follows it.
    doctored = json.loads(json.dumps(results))
    doctored["costs"]["write-behind"]["set"]["loop_cpu_us"] = 300.0
    cpu = _by(evaluate_goals(doctored), "1. write-behind set: loop CPU", "write-behind")
    assert cpu["met"] is False
    assert cpu["verdict"] == "missed by 50%"


def test_the_sections_render_every_row() -> None:
    results = _results()
    md = "\n".join(goals_section(results) + costs_section(results))
    for r in evaluate_goals(results):
        assert r["target"] in md
    assert "write-behind set | EVALSHA" in md
    assert goals_section({"stores": []}) == []
    assert costs_section({}) == []


def test_the_ha_report_shows_both_measurements() -> None:
    from baileys_store.bench._ha_run import markdown  # noqa: PLC0415

    acks = {
        "setup": "master + 1 replica",
        "rounds": [{}, {}],
        "ops_per_round": 200,
        "sessions": 8,
        "acks_0": {"p50": 0.4, "p99": 0.7},
        "acks_1": {"p50": 0.5, "p99": 0.9},
        "p50_extra_ms": 0.1,
        "p99_extra_ms": 0.2,
    }
    base = {"started_at": "t", "quick": True, "replica_acks": acks}
    md = markdown(base)
    assert "| 1 | 0.500 | 0.900 |" in md
    assert "Broker rows not measured" in md
    broker: dict[str, Any] = {"writes": 400, "sessions": 8}
    for name, p50 in (("redis", 0.9), ("nats", 2.0)):
        broker[name] = {"set_p50_ms": p50, "set_p99_ms": 9.0, "lag_p99_ms": 60.0}
    md = markdown({**base, "broker": broker})
    assert "| nats | 2.00 | 9.00 | 60.0 |" in md
