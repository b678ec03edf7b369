"""The Grafana dashboard uses only metrics the store defines, and shows every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from baileys_store.observability import METRICS_DOC

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "baileys-store.json"


def test_dashboard_queries_exactly_the_defined_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", m)
        for e in exprs
        for m in re.findall(r"baileys_store_[a-z_]+", e)
    }
    defined = {name for name, *_ in METRICS_DOC}
    assert used - defined == set()  # nothing made up
    assert defined - used == set()  # nothing left off
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
