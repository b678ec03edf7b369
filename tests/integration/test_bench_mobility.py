"""``baileys-store bench --mobility`` on real servers, small: every step runs and is reported."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from baileys_store.cli._bench import bench_command
from tests._services.postgres import PostgresServer


def test_mobility_bench_measures_copy_backup_restore(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    out = tmp_path / "mobility"
    args = ["--mobility", "--sessions", "2", "--postgres-dsn", postgres_server.admin_dsn]
    result = CliRunner().invoke(bench_command, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "mobility.json").read_text())
    names = [s["name"] for s in data["steps"]]
    assert names == [
        "fill (SQLite, reference)",
        "copy SQLite → PostgreSQL",
        "backup SQLite → file",
        "restore file → PostgreSQL",
    ]
    assert all(s["keys"] == 2 * 950 and s["seconds"] > 0 for s in data["steps"])
    assert data["peak_rss_mb"] > 0
    assert data["backup_file_mb"] > 0
    table = (out / "mobility.md").read_text()
    assert "| copy SQLite → PostgreSQL | 1,900 |" in table
    assert "peak RSS" in result.output


def test_mobility_bench_needs_postgres(tmp_path: Path) -> None:
    result = CliRunner(env={"POSTGRES_DSN": ""}).invoke(
        bench_command, ["--mobility", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--mobility needs --postgres-dsn" in result.output
