"""Markdown helpers of the bench reports: numbers to a few significant digits, tables."""

from __future__ import annotations

import math


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``-`` when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (and a blank line after it)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]
