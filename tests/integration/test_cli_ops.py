"""``baileys-store serve`` over real HTTP, and the ``outbox`` commands on a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig
from baileys_store.cli import main
from tests._services.redis import RedisServer, unique_prefix, with_query


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_answers_health_ready_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "BAILEYS_STORE_CACHE": "none"}
    cmd = [
        sys.executable,
        "-c",
        "from baileys_store.cli import main; main()",
        "--store",
        f"sqlite:///{tmp_path / 's.db'}",
        "serve",
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = line.split()[1].rsplit("/", 1)[0]  # http://127.0.0.1:PORT
        status, body = _get(base + "/health")
        assert (status, json.loads(body)["status"]) == (200, "alive")
        status, body = _get(base + "/ready")
        assert status == 200
        assert json.loads(body)["status"] == "healthy"
        status, body = _get(base + "/metrics")
        assert status == 200
        assert "baileys_store_sessions_in_use " in body  # the store's own metrics, default registry
        assert _get(base + "/nope")[0] == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def _write_behind(cache: str, db: Path) -> None:
    config = StoreConfig(
        durable=f"sqlite:///{db}", cache=cache, write_mode="write-behind", outbox_worker=False
    )
    async with AuthStore(config) as store:
        await store.session("s1", namespace="cli").keys.set({"session": {"1.0": b"x"}})
        await store.session("s2", namespace="cli").keys.set({"session": {"1.0": b"y"}})


def test_outbox_status_drain_and_dlq(redis_server: RedisServer, tmp_path: Path) -> None:
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    db = tmp_path / "o.db"
    asyncio.run(_write_behind(cache, db))
    env = {"BAILEYS_STORE_CACHE": cache, "BAILEYS_STORE_WRITE_MODE": "write-behind"}
    runner = CliRunner()
    store = ["--store", f"sqlite:///{db}"]
    result = runner.invoke(main, [*store, "outbox", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "Sessions in the ready index: 2" in result.output
    result = runner.invoke(main, [*store, "outbox", "drain"], env=env)
    assert result.exit_code == 0, result.output
    assert "Applied 2 outbox entries." in result.output
    result = runner.invoke(main, [*store, "outbox", "status"], env=env)
    assert "Sessions in the ready index: 0" in result.output
    result = runner.invoke(main, [*store, "outbox", "dlq", "list"], env=env)
    assert result.exit_code == 0
    assert "No dead letters." in result.output
    result = runner.invoke(main, [*store, "outbox", "worker", "--once"], env=env)
    assert result.exit_code == 0
    assert "Applied 0 outbox entries." in result.output


def test_outbox_without_redis_cache_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.db").touch()  # an empty SQLite store (a command never creates one)
    result = CliRunner().invoke(
        main,
        ["--store", f"sqlite:///{tmp_path / 'x.db'}", "outbox", "status"],
        env={"BAILEYS_STORE_CACHE": "none"},
    )
    assert result.exit_code == 1
    assert "needs a redis:// cache" in result.output


@pytest.mark.parametrize("args", [["outbox", "--help"], ["serve", "--help"]])
def test_help(args: list[str]) -> None:
    assert CliRunner().invoke(main, args).exit_code == 0
