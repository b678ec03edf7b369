"""``baileys-store demo``: real Signal traffic through the store, its report and its exit codes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from baileys_store import open_store
from baileys_store.cli import _demo_stats, main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def namespace_of(output: str) -> str:
    found = re.search(r"namespace (demo-[0-9a-f]{8})", output)
    assert found, output
    return found.group(1)


async def stored_sessions(url: str, namespace: str) -> list[str]:
    async with open_store(url) as store:
        return [s.session_id async for s in store.list_sessions(namespace)]


def row(output: str, label: str) -> str:
    """The value column of one summary row."""
    found = re.search(rf"{re.escape(label)}\s*│\s*([^│]+?)\s*│", output)
    assert found, f"no row {label!r} in:\n{output}"
    return found.group(1)


def test_demo_decrypts_everything_and_cleans_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'given.db'}"
    result = run(
        "--store", url, "demo", "--devices", "3", "--messages", "12", "--group-messages", "4"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert row(out, "1:1 messages sent / decrypted") == "12 / 12"
    assert row(out, "group messages sent") == "4"
    assert row(out, "group decrypts ok / expected") == "8 / 8"  # 4 messages x 2 other members
    assert row(out, "devices (store sessions)") == "3 (3)"
    assert int(row(out, "Signal sessions stored")) >= 2
    assert int(row(out, "records stored (keys + creds)")) > 3 * 800  # 812 pre-keys each, minus used
    assert "Every message decrypted." in out
    for op in ("keys.get", "keys.set", "1:1 encrypt", "1:1 decrypt", "group decrypt"):
        assert op in out
    # A --store the user gave is left as it was found.
    assert asyncio.run(stored_sessions(url, namespace_of(out))) == []


def test_demo_keep_leaves_the_sessions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    result = run(
        "--store",
        url,
        "demo",
        "--devices",
        "2",
        "--messages",
        "4",
        "--group-messages",
        "2",
        "--keep",
    )
    assert result.exit_code == 0, result.output
    sessions = asyncio.run(stored_sessions(url, namespace_of(result.stdout)))
    assert sessions == ["device-0", "device-1"]


def test_demo_default_writes_a_temporary_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run("demo", "--devices", "2", "--messages", "6", "--group-messages", "2")
    assert result.exit_code == 0, result.output
    [db] = tmp_path.glob("baileys-store-demo-*/demo.db")
    assert f"The store was written to {db}" in result.stdout
    assert row(result.stdout, "1:1 messages sent / decrypted") == "6 / 6"
    assert row(result.stdout, "SQLite file size (db + wal)").endswith("KiB")
    sessions = asyncio.run(stored_sessions(f"sqlite:///{db}", namespace_of(result.stdout)))
    assert sessions == ["device-0", "device-1"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://nowhere", "unknown scheme 'foo'"),
        ("sqlite:///", "sqlite URL needs a file path"),
    ],
)
def test_bad_store_is_one_red_line(url: str, expected: str) -> None:
    result = run("--store", url, "demo", "--devices", "2")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_store_from_the_environment(tmp_path: Path) -> None:
    env: Mapping[str, str | None] = {"BAILEYS_STORE_DURABLE": "memory://"}
    result = CliRunner(env=env).invoke(
        main, ["demo", "--devices", "2", "--messages", "2", "--group-messages", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "store: memory://" in result.stdout


def test_lost_session_writes_fail_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    # A store that silently drops some Signal session writes: messages stop decrypting and
    # the demo must say so with a non-zero exit.
    real_set = _demo_stats.CountingKeyStore.set
    calls = [0]

    async def lossy_set(self: Any, data: Any) -> None:
        calls[0] += 1
        if "session" in data and calls[0] % 5 == 0:
            return
        await real_set(self, data)

    monkeypatch.setattr(_demo_stats.CountingKeyStore, "set", lossy_set)
    result = run(
        "--store",
        "memory://",
        "demo",
        "--devices",
        "3",
        "--messages",
        "30",
        "--group-messages",
        "3",
    )
    assert result.exit_code == 1
    assert "failed to decrypt" in result.stderr.strip().splitlines()[-1]


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("baileys-store")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAILEYS_STORE_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [str(script), "demo", "--devices", "2", "--messages", "10", "--group-messages", "4"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert row(proc.stdout, "1:1 messages sent / decrypted") == "10 / 10"
    assert row(proc.stdout, "group decrypts ok / expected") == "4 / 4"
    assert "Every message decrypted." in proc.stdout
    assert list(tmp_path.glob("baileys-store-demo-*/demo.db"))
