"""The report's issue-14 sections: what one call costs the loop, and the targets judged."""

from __future__ import annotations

from typing import Any

from ._goals import evaluate_goals
from ._md import fmt, table


def costs_section(results: dict[str, Any]) -> list[str]:
    """Commands, tasks, loop iterations and loop CPU of one ``keys.set`` / ``keys.get``."""
    costs = results.get("costs")
    if not costs:
        return []
    rows = [
        [
            f"{name} {op}",
            " ".join(c["commands"]) or "-",
            fmt(c["tasks"]),
            fmt(c["turns"]),
            fmt(c["loop_cpu_us"]),
            fmt(c["loop_cpu_us_p90"]),
        ]
        for name, ops in costs.items()
        for op, c in ops.items()
    ]
    return [
        "## Cost of one call on the event loop (counted; medians of the samples)",
        "",
        "Commands as redis-py puts them on the wire, asyncio tasks created, loop iterations, "
        "CPU of the loop's thread (the SQLite writer thread not included). A 1.5 KB `session` "
        "record, the session's lease held, no background worker.",
        "",
        *table(["call", "commands", "tasks", "turns", "loop CPU us", "p90 us"], rows),
    ]


def goals_section(results: dict[str, Any]) -> list[str]:
    """Issue 14's targets, each with its goal and met / missed on this run."""
    rows = results.get("goals") or evaluate_goals(results)
    if not rows:
        return []
    body = [
        [
            r["target"],
            r["store"],
            f"{fmt(r['value'])} {r['unit']}" if r["value"] is not None else "-",
            f"{'>=' if r.get('at_least') else '<='} {fmt(r['limit'])} {r['unit']}",
            r["verdict"],
            r["note"],
        ]
        for r in rows
    ]
    met = sum(1 for r in rows if r["met"])
    judged = sum(1 for r in rows if r["met"] is not None)
    return [
        "## Targets (issue 14: the hybrid and server paths), evaluated on this run",
        "",
        *table(["target", "store", "measured", "goal", "verdict", "note"], body),
        f"{met} of {judged} issue-14 checks met.",
        "",
    ]
