"""PNG plots: latency per op and store, scaling curves, throughput, resident sessions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ops import OPS
from ._targets import ok_stores, stat

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTS = ("latency.png", "scaling.png", "throughput.png", "resident.png")


def _colors(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps  # noqa: PLC0415 (~0.5 s: only when plots are drawn)

    cmap = colormaps["tab20"]
    return {n: cmap(i % 20) for i, n in enumerate(names)}


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure  # noqa: PLC0415

    # The object API renders with Agg and touches no global pyplot state.
    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _latency(stores: list[dict[str, Any]], colors: dict[str, Any], path: Path) -> None:
    cols = 3
    rows = -(-len(OPS) // cols)
    fig, axes = _figure(rows, cols, (5 * cols, 3.2 * rows))
    for ax, op in zip(axes.flat, OPS, strict=False):
        names = [s["name"] for s in stores if stat(s, op.name) is not None]
        p50 = [stat(s, op.name) for s in stores if stat(s, op.name) is not None]
        p99 = [stat(s, op.name, "p99") for s in stores if stat(s, op.name) is not None]
        ypos = range(len(names))
        ax.barh(ypos, p99, color="lightgrey", label="p99")
        ax.barh(ypos, p50, color=[colors[n] for n in names], label="p50")
        ax.set_yticks(list(ypos), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(op.name, fontsize=9)
        ax.set_xlabel("ms (log)", fontsize=7)
    for ax in list(axes.flat)[len(OPS) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Latency per operation: p50 (colour) and p99 (grey)")
    _save(fig, path)


def _scaling(stores: list[dict[str, Any]], colors: dict[str, Any], path: Path) -> None:
    fig, grid = _figure(1, 2, (13, 4.5))
    axes = grid[0]
    for ax, kind in zip(axes, ("get", "set"), strict=True):
        for s in stores:
            scaling = s.get("scaling") or {}
            sizes = sorted(scaling, key=int)
            if sizes:
                ax.plot(
                    [int(n) for n in sizes],
                    [scaling[n][kind]["p50"] for n in sizes],
                    marker="o",
                    label=s["name"],
                    color=colors[s["name"]],
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("keys in the session")
        ax.set_ylabel("single-key p50 (ms)")
        ax.set_title(f"per-key {kind} vs session size")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def _throughput(stores: list[dict[str, Any]], colors: dict[str, Any], path: Path) -> None:
    fig, grid = _figure(1, 1, (9, 5))
    ax = grid[0][0]
    for s in stores:
        tput = s.get("throughput") or {}
        levels = sorted(tput, key=int)
        if levels:
            ax.plot(
                [int(c) for c in levels],
                [tput[c]["median"] for c in levels],
                marker="o",
                label=s["name"],
                color=colors[s["name"]],
            )
    ax.set_xscale("log", base=2)
    levels_all = sorted({int(c) for s in stores for c in (s.get("throughput") or {})})
    if levels_all:
        ax.set_xticks(levels_all, [str(c) for c in levels_all])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("key-ops/s")
    ax.set_title("Throughput vs concurrency")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def _resident(stores: list[dict[str, Any]], path: Path) -> None:
    rows = [(s["name"], s["resident"]) for s in stores if s.get("resident")]
    fig, grid = _figure(1, 2, (12, 4.5))
    axes = grid[0]
    if rows:
        names = [n for n, _ in rows]
        pos = range(len(names))
        width = 0.27
        for shift, key, label in (
            (-width, "payload_bytes_per_session", "raw payload"),
            (0.0, "disk_bytes_per_session", "on disk"),
            (width, "memory_bytes_per_session", "Redis memory"),
        ):
            values = [(r.get(key) or 0) / 1e3 for _, r in rows]
            axes[0].bar([p + shift for p in pos], values, width, label=label)
        axes[0].set_xticks(list(pos), names, rotation=20, fontsize=7)
        axes[0].set_ylabel("KB per session")
        axes[0].legend(fontsize=7)
        axes[1].bar(list(pos), [r.get("import_ms_per_session") or 0 for _, r in rows])
        axes[1].set_xticks(list(pos), names, rotation=20, fontsize=7)
        axes[1].set_yscale("log")
        axes[1].set_ylabel("import ms per session (log)")
    axes[0].set_title("Size per resident session")
    axes[1].set_title("Time to import one session")
    _save(fig, path)


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Write every PNG into ``out``; returns their paths."""
    stores = list(ok_stores(results))
    colors = _colors([s["name"] for s in stores])
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in PLOTS]
    _latency(stores, colors, paths[0])
    _scaling(stores, colors, paths[1])
    _throughput(stores, colors, paths[2])
    _resident(stores, paths[3])
    return paths
