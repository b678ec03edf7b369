"""Smoke run of ``baileys-store bench --quick``: it runs, writes every file, numbers are sane."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from baileys_store.bench import OP_NAMES, PLOTS
from baileys_store.bench._stats import percentile, summarize
from baileys_store.bench._targets import evaluate
from baileys_store.cli._bench import bench_command

STORES = (
    "pyaileys-folder",
    "session-blob",
    "memory",
    "sqlite-normal",
    "sqlite-full",
    "sqlite-normal+mem",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(
        bench_command,
        [
            "--quick",
            "--repeat",
            "1",
            "--no-progress",
            "--out",
            str(out),
            "--sessions",
            "2",
            "--stores",
            ",".join(STORES),
            "--redis-url",
            "",
            "--postgres-dsn",
            "",
            "--mongodb-uri",
            "",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    return out, results, (out / "results.md").read_text()


def _store(results: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in results["stores"] if s["name"] == name)


def test_every_store_ran_every_op_with_positive_numbers(
    bench_out: tuple[Path, dict[str, Any], str],
) -> None:
    _, results, _ = bench_out
    assert [s["name"] for s in results["stores"]] == list(STORES)
    for name in STORES:
        store = _store(results, name)
        assert store["status"] == "ok", store.get("reason")
        assert set(store["latency"]) == set(OP_NAMES)
        for op in OP_NAMES:
            entry = store["latency"][op]
            assert all(s > 0 for rep in entry["samples_ms"] for s in rep), (name, op)
            summary = entry["summary"]
            assert summary["n"] >= 3
            assert 0 < summary["min"] <= summary["p50"] <= summary["p95"] <= summary["p99"]
            assert summary["p99"] <= summary["max"] < 60_000  # sane: under a minute
        assert all(store["throughput"][c]["median"] > 0 for c in ("1", "8", "64"))
        for size in ("10", "100", "500"):
            assert store["scaling"][size]["get"]["p50"] > 0
            assert store["scaling"][size]["set"]["p50"] > 0
        signal = store["signal"]
        assert signal["roundtrip_1to1"]["n"] == 3
        assert signal["roundtrip_1to1"]["p50"] > 0


def test_machine_resident_and_ratios(bench_out: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = bench_out
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["ram_bytes"] > 0
    assert machine["python"]
    resident = _store(results, "sqlite-normal")["resident"]
    assert resident["imported"] >= 1
    assert resident["disk_bytes_per_session"] > 0
    assert resident["payload_bytes_per_session"] > 0
    assert _store(results, "pyaileys-folder")["resident"]["disk_bytes_per_session"] > 0
    # Every non-folder store has a ratio against the folder store for every op.
    ratios = results["ratios"]["pyaileys-folder"]
    assert set(ratios) == set(STORES) - {"pyaileys-folder"}
    assert all(r[op] > 0 for r in ratios.values() for op in OP_NAMES)
    # fsync-on-commit has its own rows: FULL against NORMAL, same op, same run.
    cost = {c["op"]: c for c in results["fsync_cost"]}
    assert set(cost) == {"set", "batch_set_812", "msg_1to1", "creds_burst"}
    for row in cost.values():
        assert row["pair"] == "sqlite-full vs sqlite-normal"
        assert row["full_ms"] > 0
        assert row["normal_ms"] > 0
        assert math.isclose(row["delta_ms"], row["full_ms"] - row["normal_ms"])


def test_markdown_lists_every_store_and_op(bench_out: tuple[Path, dict[str, Any], str]) -> None:
    _, results, md = bench_out
    p50 = md.split("### p50", 1)[1].split("###", 1)[0]
    header = next(line for line in p50.splitlines() if line.startswith("| store"))
    assert all(op in header for op in OP_NAMES)
    rows = {
        line.split("|")[1].strip(): line
        for line in p50.splitlines()
        if line.startswith("| ") and not line.startswith("| store")
    }
    assert set(rows) == set(STORES)
    for line in rows.values():  # every cell holds a number
        cells = [c.strip() for c in line.strip("|").split("|")[1:]]
        assert len(cells) == len(OP_NAMES)
        assert all(float(c.replace(",", "")) > 0 for c in cells)
    assert "## Targets (issue 6)" in md
    assert "target checks met" in md
    assert results["wall_seconds"] > 0


def test_targets_are_computed_from_the_numbers(
    bench_out: tuple[Path, dict[str, Any], str],
) -> None:
    _, results, md = bench_out
    rows = results["targets"]
    assert rows == evaluate(results)
    assert {r["store"] for r in rows} == {
        "memory",
        "sqlite-normal",
        "sqlite-full",
        "sqlite-normal+mem",
    }
    assert any(r["target"].startswith("cache-hit get") for r in rows)
    assert any("faster than the pyaileys folder" in r["target"] for r in rows)
    for row in rows:
        assert row["met"] is not None
        assert row["verdict"] == "met" if row["met"] else row["verdict"].startswith("missed")
        assert row["target"] in md
    # Change a number and the verdict follows it.
    doctored = json.loads(json.dumps(results))
    _store(doctored, "memory")["latency"]["batch_set_812"]["summary"]["p50"] = 25.0
    verdict = next(
        r
        for r in evaluate(doctored)
        if r["store"] == "memory" and r["target"].startswith("batch_set_812")
    )
    assert verdict["met"] is False
    assert verdict["verdict"] == "missed by 150%"


def test_pngs_are_real_images(bench_out: tuple[Path, dict[str, Any], str]) -> None:
    out, _, _ = bench_out
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert width >= 300, name
        assert height >= 200, name
        assert len(data) > 10_000, name


def test_server_stores_are_skipped_with_a_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench_command,
        [
            "--quick",
            "--repeat",
            "1",
            "--no-progress",
            "--no-plots",
            "--no-signal",
            "--out",
            str(tmp_path),
            "--stores",
            "redis,postgres,mongodb",
            "--redis-url",
            "",
            "--postgres-dsn",
            "postgresql://127.0.0.1:1/none",
            "--mongodb-uri",
            "",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    stores = json.loads((tmp_path / "results.json").read_text())["stores"]
    reasons = {s["name"]: (s["status"], s["reason"]) for s in stores}
    assert reasons["redis"] == ("skipped", "no redis server given (--redis-url)")
    assert reasons["postgres"][0] == "skipped"
    assert "did not answer" in reasons["postgres"][1]
    assert reasons["mongodb"] == ("skipped", "no mongodb server given (--mongodb-uri)")
    assert "skipped" in (tmp_path / "results.md").read_text()


def test_unknown_store_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        bench_command, ["--quick", "--out", str(tmp_path), "--stores", "nope"]
    )
    assert result.exit_code == 2
    assert "no store matches" in result.output


def test_percentiles() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    summary = summarize([float(n) for n in range(1, 101)])
    assert summary["p50"] == 50.5
    assert summary["min"] == 1
    assert summary["max"] == 100
    assert math.isclose(summary["p99"], 99.01)
    assert summarize([])["n"] == 0
