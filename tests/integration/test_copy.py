"""``baileys-store copy`` and ``copy_sessions``: between real stores, resumable, verified."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig
from baileys_store._session import KeyStore
from baileys_store.cli._copy import copy_command
from baileys_store.integrations._copy import copy_sessions, session_digest
from tests._services.postgres import PostgresDatabase
from tests._services.redis import RedisServer, unique_prefix, with_query

K1 = "11" * 32


def sqlite(path: Path, **settings: Any) -> StoreConfig:
    return StoreConfig(durable=f"sqlite:///{path}", cache=None, **settings)


def pg_url(db: PostgresDatabase) -> str:
    """This run's database, in a schema no other test uses."""
    return with_query(db.dsn, schema=f"t_{uuid.uuid4().hex[:10]}")


async def seed(config: StoreConfig, sessions: int, keys: int = 30, ns: str = "default") -> None:
    async with AuthStore(config) as store:
        for n in range(sessions):
            s = store.session(f"s{n}", namespace=ns)
            pre = {
                str(i): {"public": b"P" * 32, "private": bytes([i % 256]) * 32} for i in range(keys)
            }
            await s.keys.set({"pre-key": pre, "session": {f"{n}.0": b"S" * 200}})
            await s.save_creds({"registrationId": n + 1, "advSecretKey": "x"})


async def digests(config: StoreConfig, ns: str = "default") -> dict[str, tuple[int, str]]:
    async with AuthStore(config) as store:
        return {
            info.session_id: await session_digest(store.session(info.session_id, namespace=ns))
            async for info in store.list_sessions(ns)
        }


async def copy(src: StoreConfig, dst: StoreConfig, **options: Any) -> Any:
    async with AuthStore(src) as source, AuthStore(dst) as dest:
        return await copy_sessions(source, dest, **options)


def run(*args: str) -> Any:
    return CliRunner().invoke(copy_command, list(args))


async def arun(*args: str) -> Any:
    """:func:`run` from a test's event loop (the command runs its own)."""
    return await asyncio.to_thread(run, *args)


async def test_sqlite_to_postgres_copies_and_verifies(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    src, dst = sqlite(tmp_path / "a.db"), StoreConfig(durable=pg_url(postgres_db), cache=None)
    await seed(src, 3, keys=600)
    report = await copy(src, dst)
    assert (report.seen, report.copied, report.keys, report.ok) == (3, 3, 3 * 601, True)
    assert await digests(dst) == await digests(src)
    async with AuthStore(dst) as store:
        assert await store.session("s2").load_creds() == {"registrationId": 3, "advSecretKey": "x"}
    again = await copy(src, dst)  # a rerun: every session is identical, nothing written
    assert (again.identical, again.copied, again.keys) == (3, 0, 0)


async def test_postgres_to_encrypted_sqlite(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    src = StoreConfig(durable=pg_url(postgres_db), cache=None)
    dst = sqlite(tmp_path / "enc.db", encryption="aes-256-gcm", master_keys={1: K1})
    await seed(src, 2)
    assert (await copy(src, dst)).copied == 2
    assert await digests(dst) == await digests(src)
    async with AuthStore(dst) as store:  # encrypted at rest: no plaintext in the stored blob
        blob = await store.durable.get_keys(store.session("s1").keys._ops.addr, "session", ["1.0"])
        assert b"S" * 200 not in blob["1.0"]
    with pytest.raises(Exception, match=r"(?i)encrypt|master"):
        await digests(sqlite(tmp_path / "enc.db"))  # the key is needed to read it back


def test_sqlite_to_redis_only_cli_json(tmp_path: Path, redis_server: RedisServer) -> None:
    db = tmp_path / "r.db"
    asyncio.run(seed(sqlite(db), 2))
    url = with_query(redis_server.url, prefix=unique_prefix())
    result = run("--from", f"sqlite:///{db}", "--to", url, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {k: doc[k] for k in ("ok", "seen", "copied", "keys", "dry_run")} == {
        "ok": True,
        "seen": 2,
        "copied": 2,
        "keys": 62,
        "dry_run": False,
    }
    assert set(doc) >= {"replaced", "identical", "conflicts", "in_use", "changed", "failed"}
    dst = StoreConfig(durable=url, cache=None)
    assert asyncio.run(digests(dst)) == asyncio.run(digests(sqlite(db)))


async def test_differing_session_refused_then_replaced(tmp_path: Path) -> None:
    src, dst = sqlite(tmp_path / "a.db"), sqlite(tmp_path / "b.db")
    await seed(src, 2)
    await copy(src, dst)
    async with AuthStore(dst) as store:
        await store.session("s1").keys.set({"pre-key": {"0": None, "extra": b"x"}})
    refused = await copy(src, dst)
    assert (refused.identical, refused.conflicts, refused.ok) == (1, 1, False)
    assert refused.sessions[0].session_id == "s1"
    result = await arun(
        "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", f"sqlite:///{tmp_path / 'b.db'}"
    )
    assert result.exit_code == 1
    assert "conflict" in result.output
    replaced = await copy(src, dst, replace=True)
    assert (replaced.copied, replaced.replaced, replaced.identical, replaced.ok) == (1, 1, 1, True)
    assert await digests(dst) == await digests(src)


class CrashError(Exception):
    """The process dies mid-copy."""


async def test_interrupted_copy_finished_by_a_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = sqlite(tmp_path / "a.db"), sqlite(tmp_path / "b.db")
    await seed(src, 4, keys=1200)  # 3 chunks of keys per session
    real_set, calls = KeyStore.set, []

    async def failing_set(self: KeyStore, data: Any) -> None:
        calls.append(1)
        if len(calls) == 6:  # 4 chunks a session: the second chunk of s1
            raise CrashError
        await real_set(self, data)

    monkeypatch.setattr(KeyStore, "set", failing_set)
    with pytest.raises(CrashError):
        await copy(src, dst)
    monkeypatch.setattr(KeyStore, "set", real_set)
    # Sessions are copied a few at a time: the crash leaves the finished ones whole (creds
    # saved last) and the others with some keys but no creds.
    async with AuthStore(dst) as store:
        sessions = [store.session(f"s{i}") for i in range(4)]
        whole = [await s.creds_version() > 0 for s in sessions]
        partial = [
            not w and bool(await s.key_counts()) for s, w in zip(sessions, whole, strict=True)
        ]
    assert any(partial)  # an interrupted session is there without creds
    report = await copy(src, dst)
    assert (report.identical, report.copied, report.ok) == (sum(whole), 4 - sum(whole), True)
    assert await digests(dst) == await digests(src)


async def test_dry_run_writes_nothing(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    db, missing = tmp_path / "a.db", tmp_path / "new.db"
    await seed(sqlite(db), 3)
    result = await arun(
        "--from", f"sqlite:///{db}", "--to", f"sqlite:///{missing}", "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["dry_run"], doc["copied"], doc["keys"]) == (True, 3, 93)
    assert not missing.exists()
    dst = StoreConfig(durable=pg_url(postgres_db), cache=None)
    report = await copy(sqlite(db), dst, dry_run=True)
    assert (report.copied, report.keys) == (3, 93)
    assert await digests(dst) == {}


def test_bad_urls_are_one_line_errors(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    result = run("--from", "nosuch://x", "--to", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert "unknown scheme 'nosuch'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not db.exists()
    result = run("--from", f"sqlite:///{tmp_path / 'missing.db'}", "--to", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert not db.exists()  # the destination is never opened after a bad source


async def test_same_store_and_missing_session(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await seed(sqlite(db), 1)
    result = await arun("--from", f"sqlite:///{db}", "--to", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert "same store" in result.output
    other = f"sqlite:///{tmp_path / 'b.db'}"
    result = await arun("--from", f"sqlite:///{db}", "--to", other, "--session", "nope")
    assert result.exit_code == 1
    assert "no session default/nope" in result.output
    result = await arun("--from", f"sqlite:///{db}", "--to", other, "--session", "s0")
    assert result.exit_code == 0
    assert "copied 31 keys" in result.output


async def test_leased_destination_session_is_skipped(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    src = sqlite(tmp_path / "a.db")
    await seed(src, 2)
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    dst = StoreConfig(durable=f"sqlite:///{tmp_path / 'b.db'}", cache=cache)
    async with AuthStore(dst) as app:  # a live process holds s1 at the destination
        await app.session("s1").save_creds({"registrationId": 99})
        report = await copy(src, dst, replace=True)
    assert (report.copied, report.in_use, report.ok) == (1, 1, False)
    assert report.sessions[0].status == "in_use"


async def test_list_ids_and_items_page_over_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AuthStore(sqlite(tmp_path / "k.db")) as store:
        keys = store.session("s").keys
        await keys.set({"pre-key": {str(i): {"n": i} for i in range(1203)}, "session": {"a": b"1"}})
        ids = [i async for i in keys.list_ids("pre-key")]
        assert ids == sorted(str(i) for i in range(1203))
        real_get, sizes = KeyStore.get, []

        async def get(self: KeyStore, type: str, wanted: Any) -> dict[str, Any]:
            sizes.append(len(wanted))
            return await real_get(self, type, wanted)

        monkeypatch.setattr(KeyStore, "get", get)
        items = [item async for item in keys.items("pre-key")]
        assert items == [(i, {"n": int(i)}) for i in ids]
        assert sizes == [500, 500, 203]
        assert [i async for i in keys.items("sender-key")] == []
