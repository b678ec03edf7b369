"""Percentiles and the median of repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

STATS = ("p50", "p95", "p99", "mean", "min", "max")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of an ascending sequence."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """``n``, p50/p95/p99, mean, min, max of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"n": 0, **dict.fromkeys(STATS, math.nan)}
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }


def median_of(reps: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per statistic, the median over repetitions (``n`` is summed)."""
    if not reps:
        return summarize([])
    out = {k: statistics.median(r[k] for r in reps) for k in STATS}
    out["n"] = sum(r["n"] for r in reps)
    out["reps"] = len(reps)
    return out
