"""``sessions stats``, and ``--json`` on ``sessions list|inspect|stats`` and ``outbox status``."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from baileys_store import AuthStore, StoreConfig
from baileys_store._model import SessionAddr
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.cli._outbox import outbox_group
from baileys_store.cli._sessions import sessions_group
from tests._services.redis import RedisServer, unique_prefix, with_query


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)


def cli(command: Any, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(command, list(args), env=env)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """s1 (1,200 pre-keys, 3 sessions, creds) in clinic; s2 (keys only) in other."""
    path = tmp_path / "stats.db"

    async def fill() -> None:
        async with AuthStore(StoreConfig(durable=f"sqlite:///{path}", cache=None)) as store:
            s1 = store.session("s1", namespace="clinic")
            pre = {str(i): os.urandom(32 + i % 7) for i in range(1200)}
            await s1.keys.set({"pre-key": pre, "session": {f"{i}.0": b"s" * 90 for i in range(3)}})
            pair = {"private": b"x" * 32, "public": b"y" * 32}
            await s1.save_creds({"noiseKey": pair, "me": {"id": "1@s.whatsapp.net"}})
            await store.session("s2", namespace="other").keys.set({"sender-key": {"g::u::0": b"k"}})

    asyncio.run(fill())
    return path


def sql_stats(path: Path) -> dict[str, dict[str, int]]:
    """Count and bytes per type, straight from the SQLite file (independent of the command)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, count(*), sum(length(value)) FROM bs_keys GROUP BY type ORDER BY type"
        ).fetchall()
    return {t: {"count": n, "bytes": b} for t, n, b in rows}


def test_stats_per_type_and_per_session(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks: list[int] = []
    get_keys = SQLiteDurable.get_keys

    async def spy(self: SQLiteDurable, addr: SessionAddr, t: str, ids: Sequence[str]) -> Any:
        chunks.append(len(ids))
        return await get_keys(self, addr, t, ids)

    monkeypatch.setattr(SQLiteDurable, "get_keys", spy)
    result = cli(sessions_group, "stats", "--json", "--store", f"sqlite:///{db}")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["namespace", "types", "sessions", "totals"]
    assert doc["namespace"] is None
    assert doc["types"] == sql_stats(db)
    assert doc["types"]["pre-key"]["count"] == 1200
    assert max(chunks) == 500  # streamed in chunks, never one read of a whole type
    s1, s2 = doc["sessions"]
    assert list(s1) == ["namespace", "session_id", "updated_at", "keys", "bytes"]
    assert (s1["namespace"], s1["session_id"], s1["keys"]) == ("clinic", "s1", 1203)
    stored = sql_stats(db)["sender-key"]["bytes"]  # the blob as stored: codec header included
    assert (s2["namespace"], s2["session_id"], s2["keys"], s2["bytes"]) == (
        "other",
        "s2",
        1,
        stored,
    )
    assert s1["updated_at"] > 1_600_000_000
    total_bytes = sum(t["bytes"] for t in doc["types"].values())
    assert doc["totals"] == {"sessions": 2, "keys": 1204, "bytes": total_bytes}
    assert s1["bytes"] + s2["bytes"] == total_bytes

    only = json.loads(
        cli(
            sessions_group, "stats", "--json", "--namespace", "other", "--store", f"sqlite:///{db}"
        ).stdout
    )
    assert only["namespace"] == "other"
    assert only["types"] == {"sender-key": sql_stats(db)["sender-key"]}


def rows(output: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_stats_table(db: Path) -> None:
    result = cli(sessions_group, "stats", "--store", f"sqlite:///{db}")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    stats = sql_stats(db)
    pre = stats["pre-key"]
    assert ["pre-key", "1200", str(pre["bytes"]), str(pre["bytes"] // 1200)] in table
    assert table[len(stats)][:2] == ["total", "1204"]
    per_session = table[len(stats) + 1 :]
    assert [r[:3] for r in per_session] == [["clinic", "s1", "1203"], ["other", "s2", "1"]]
    assert all(r[4].endswith("UTC") for r in per_session)
    assert "2 session(s)" in result.stdout
    help_text = " ".join(cli(sessions_group, "stats", "--help").stdout.split())
    assert "Reads every record" in help_text
    assert '"totals" ({"sessions", "keys", "bytes"})' in help_text


def test_stats_of_an_empty_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(_touch(url))
    assert "No sessions." in cli(sessions_group, "stats", "--store", url).stdout
    doc = json.loads(cli(sessions_group, "stats", "--json", "--store", url).stdout)
    assert doc == {
        "namespace": None,
        "types": {},
        "sessions": [],
        "totals": {"sessions": 0, "keys": 0, "bytes": 0},
    }


async def _touch(url: str) -> None:
    async with AuthStore(StoreConfig(durable=url, cache=None)):
        pass


def test_list_and_inspect_json(db: Path) -> None:
    url = f"sqlite:///{db}"
    doc = json.loads(cli(sessions_group, "list", "--json", "--store", url).stdout)
    assert list(doc) == ["sessions", "count"]
    assert doc["count"] == 2
    assert [(s["namespace"], s["session_id"], s["creds_version"]) for s in doc["sessions"]] == [
        ("clinic", "s1", 1),
        ("other", "s2", 0),
    ]
    assert all(
        set(s) == {"namespace", "session_id", "creds_version", "updated_at"}
        for s in doc["sessions"]
    )

    doc = json.loads(
        cli(
            sessions_group, "inspect", "s1", "--namespace", "clinic", "--json", "--store", url
        ).stdout
    )
    assert doc == {
        "namespace": "clinic",
        "session_id": "s1",
        "creds_version": 1,
        "creds": {
            "flavour": "node",
            "registered": False,
            "account": "1@s.whatsapp.net",
            "next_pre_key_id": None,
        },
        "key_counts": {"pre-key": 1200, "session": 3},
        "total_keys": 1203,
    }
    doc = json.loads(
        cli(
            sessions_group, "inspect", "s2", "--namespace", "other", "--json", "--store", url
        ).stdout
    )
    assert (doc["creds_version"], doc["creds"], doc["total_keys"]) == (0, None, 1)
    missing = cli(sessions_group, "inspect", "nope", "--json", "--store", url)
    assert missing.exit_code == 1
    assert "no session default/nope" in missing.output


def test_outbox_status_json(redis_server: RedisServer, tmp_path: Path) -> None:
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    db = tmp_path / "o.db"

    async def write_behind() -> None:
        config = StoreConfig(
            durable=f"sqlite:///{db}", cache=cache, write_mode="write-behind", outbox_worker=False
        )
        async with AuthStore(config) as store:
            await store.session("s1", namespace="cli").keys.set({"session": {"1.0": b"x"}})
            await store.session("s1", namespace="cli").keys.set({"session": {"2.0": b"y"}})

    asyncio.run(write_behind())
    env = {"BAILEYS_STORE_CACHE": cache, "BAILEYS_STORE_WRITE_MODE": "write-behind"}
    result = cli(outbox_group, "status", "--json", "--store", f"sqlite:///{db}", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "ready_sessions",
        "oldest_pending_at",
        "lag_seconds",
        "dead_letter_sessions",
        "sessions",
        "transport",
    ]
    assert doc["transport"] == {"name": "redis"}
    assert doc["ready_sessions"] == 1
    assert doc["dead_letter_sessions"] == 0
    assert doc["lag_seconds"] >= 0
    (row,) = doc["sessions"]
    assert (row["namespace"], row["session_id"], row["pending"]) == ("cli", "s1", 2)
    assert row["oldest_at"] == pytest.approx(doc["oldest_pending_at"], abs=1)
