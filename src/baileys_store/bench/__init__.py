"""The benchmark behind ``baileys-store bench``: our backends beside what users run today.

One call runs every store (pyaileys' folder store, an anchor-style whole-session blob, and each
of our backends and modes that can run here) through the same seeded workload and writes
``results.json``, ``results.md`` and PNG plots. Needs the ``bench`` extra (matplotlib,
pyaileys, click, rich).

Example:
    >>> from baileys_store.bench import BenchOptions, run
    >>> results = run(BenchOptions(out=Path("bench-results"), quick=True))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

from ._ops import OP_NAMES, OPS
from ._plots import PLOTS, write_plots
from ._report import write_reports
from ._runner import BenchOptions, run_bench, run_bench_sync
from ._specs import SPECS, StoreSpec


def _finite(value: Any) -> Any:
    """``results`` with NaN/inf replaced by ``None`` (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run(options: BenchOptions, *, plots: bool = True) -> dict[str, Any]:
    """Run the bench and write every output file into ``options.out``; returns the results."""
    results: dict[str, Any] = _finite(run_bench_sync(options))
    write_reports(results, options.out)
    if plots:
        write_plots(results, options.out)
    return results


__all__ = [
    "OPS",
    "OP_NAMES",
    "PLOTS",
    "SPECS",
    "BenchOptions",
    "StoreSpec",
    "run",
    "run_bench",
    "write_plots",
    "write_reports",
]
