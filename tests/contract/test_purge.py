"""Explicit retention: ``AuthStore.purge`` and ``baileys-store purge`` on every backend."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig, errors, open_store
from baileys_store.cli import main
from baileys_store.cli._purge import parse_duration
from tests.conftest import Backend


async def _sessions(store: AuthStore, ns: str) -> list[str]:
    return [i.session_id async for i in store.list_sessions(ns)]


async def test_purge_deletes_only_sessions_older_than_the_cutoff(
    store: AuthStore, backend: Backend
) -> None:
    ns = backend.namespace
    for sid in ("old-1", "old-2"):
        await store.session(sid, namespace=ns).keys.set({"session": {"1.0": b"x"}})
    await asyncio.sleep(0.7)
    await store.session("fresh", namespace=ns).save_creds({"registrationId": 1})
    dry = await store.purge(0.5, namespace=ns, dry_run=True)
    assert (dry.matched, dry.deleted) == (2, 0)
    assert sorted(await _sessions(store, ns)) == ["fresh", "old-1", "old-2"]
    report = await store.purge(0.5, namespace=ns)
    assert (report.matched, report.deleted, report.in_use) == (2, 2, 0)
    assert await _sessions(store, ns) == ["fresh"]
    assert await store.session("old-1", namespace=ns).keys.get("session", ["1.0"]) == {}
    with pytest.raises(errors.InvalidInputError):
        await store.purge(0)


def test_duration_parsing() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "12h", "30d", "1.5h")] == [
        90,
        900,
        43200,
        2592000,
        5400,
    ]
    for bad in ("", "10", "-1d", "0s", "3w"):
        with pytest.raises(Exception, match="expected a positive number"):
            parse_duration(bad)


def test_purge_command_dry_run_then_delete(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/p.db"

    async def seed() -> None:
        async with open_store(StoreConfig(durable=db, cache=None)) as store:
            await store.session("s1").keys.set({"session": {"1.0": b"x"}})

    asyncio.run(seed())
    time.sleep(1.1)
    runner, env = CliRunner(), {"BAILEYS_STORE_CACHE": "none"}
    result = runner.invoke(
        main, ["--store", db, "purge", "--older-than", "1s", "--dry-run"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "1 session(s) older than 1s would be deleted." in result.output
    result = runner.invoke(main, ["--store", db, "purge", "--older-than", "1s"], env=env)
    assert result.exit_code == 1
    assert "nothing purged" in result.output
    result = runner.invoke(main, ["--store", db, "purge", "--older-than", "1s", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "Deleted 1 of 1 session(s)" in result.output


async def test_touch_keeps_a_session_from_the_purge(store: AuthStore, backend: Backend) -> None:
    ns = backend.namespace
    for sid in ("idle", "alive"):
        await store.session(sid, namespace=ns).keys.set({"session": {"1.0": b"x"}})
    await asyncio.sleep(0.7)
    assert await store.touch("alive", namespace=ns)
    assert not await store.touch("never-written", namespace=ns)  # a touch creates nothing
    report = await store.purge(0.5, namespace=ns)
    assert (report.matched, report.deleted) == (1, 1)
    assert await _sessions(store, ns) == ["alive"]
    assert await store.session("alive", namespace=ns).keys.get("session", ["1.0"]) == {"1.0": b"x"}


def test_sessions_touch_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"

    async def seed() -> None:
        async with open_store(StoreConfig(durable=db, cache=None)) as store:
            await store.session("s1").keys.set({"session": {"1.0": b"x"}})

    asyncio.run(seed())
    runner, env = CliRunner(), {"BAILEYS_STORE_CACHE": "none"}
    result = runner.invoke(main, ["--store", db, "sessions", "touch", "s1"], env=env)
    assert result.exit_code == 0, result.output
    assert "Touched session default/s1." in result.output
    result = runner.invoke(main, ["--store", db, "sessions", "touch", "nope"], env=env)
    assert result.exit_code == 1
    assert "no session default/nope" in result.output
