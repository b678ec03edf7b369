"""``baileys-store bench --ha``: what the high-availability options cost, in one run.

Two measurements, each side by side in the same run: write-behind ``keys.set`` with
``cache_replica_acks`` 0 and 1 (a throwaway master + one loopback replica, :mod:`._ha`), and
write-behind over the Redis outbox against NATS JetStream (set latency and outbox lag,
:mod:`._broker`; only when a NATS URL is given). Writes ``ha.json`` and ``ha.md``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ._broker import broker_figures
from ._ha import replica_acks_bench
from ._md import fmt, table


async def run_ha(redis_url: str | None, nats_url: str | None, out: Path, *, quick: bool) -> str:
    """Run both measurements (the broker one needs both URLs); returns the Markdown report."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any measurement
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: dict[str, Any] = {"started_at": started, "quick": quick}
    rounds, ops = (2, 200) if quick else (7, 2000)
    results["replica_acks"] = await replica_acks_bench(None, rounds=rounds, ops=ops)
    if redis_url and nats_url:
        with tempfile.TemporaryDirectory(prefix="bs-ha-broker-") as tmp:
            n = 400 if quick else 2000
            results["broker"] = await broker_figures(redis_url, nats_url, Path(tmp), n=n)
    (out / "ha.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    md = markdown(results)
    (out / "ha.md").write_text(md)
    return md


def markdown(results: dict[str, Any]) -> str:
    """The report of :func:`run_ha` as Markdown."""
    acks = results["replica_acks"]
    lines = [
        "# baileys-store bench --ha",
        "",
        f"- Run: {results['started_at']}{' (quick)' if results['quick'] else ''}.",
        "",
        "## Write-behind `keys.set` with replica acknowledgements (one loopback replica)",
        "",
        f"{acks['setup']}; {len(acks['rounds'])} rounds of {acks['ops_per_round']} sets over "
        f"{acks['sessions']} sessions, the two settings alternating; medians over the rounds.",
        "",
        *table(
            ["cache_replica_acks", "p50 ms", "p99 ms"],
            [
                [str(n), fmt(acks[f"acks_{n}"]["p50"]), fmt(acks[f"acks_{n}"]["p99"])]
                for n in (0, 1)
            ],
        ),
        f"`WAIT 1` adds {fmt(acks['p50_extra_ms'])} ms at p50, "
        f"{fmt(acks['p99_extra_ms'])} ms at p99.",
        "",
    ]
    broker = results.get("broker")
    if broker:
        lines += [
            "## Write-behind over the Redis outbox and over NATS JetStream",
            "",
            f"{broker['writes']} sets in all over {broker['sessions']} sessions, "
            "same Redis and SQLite.",
            "",
            *table(
                ["outbox", "set p50 ms", "set p99 ms", "outbox lag p99 ms"],
                [
                    [
                        name,
                        fmt(broker[name]["set_p50_ms"]),
                        fmt(broker[name]["set_p99_ms"]),
                        fmt(broker[name]["lag_p99_ms"]),
                    ]
                    for name in ("redis", "nats")
                ],
            ),
        ]
    else:
        lines += ["Broker rows not measured: give --redis-url and --nats-url.", ""]
    return "\n".join(lines)
