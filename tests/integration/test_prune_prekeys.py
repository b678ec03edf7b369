"""``keys prune-prekeys``: the rule's boundaries, skips, dry run and ``--json``, on SQLite and
PostgreSQL (the proof with a real pyaileys client is ``tests/e2e/test_prune_pyaileys.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from click.testing import CliRunner
from pyaileys.auth.utils import init_auth_creds

from baileys_store import AuthStore, errors
from baileys_store.cli._keys import prune_prekeys_command
from baileys_store.integrations._prune import DEFAULT_KEEP, prune_prekeys, upload_mark
from tests.conftest import Backend
from tests.creds_data import node_creds


@pytest.fixture(params=["sqlite", "postgres"])
def on(request: pytest.FixtureRequest) -> Backend:
    value: Any = request.getfixturevalue(f"backend_{request.param}")
    assert isinstance(value, Backend)
    return value


def pre_keys(ids: range | list[int]) -> dict[str, Any]:
    return {"pre-key": {str(i): {"public": b"p" * 32, "private": b"q" * 32} for i in ids}}


async def stored_ids(store: AuthStore, sid: str, ns: str) -> set[int]:
    return {int(i) for i in (await store.session(sid, namespace=ns).key_ids()).get("pre-key", [])}


async def seed(
    store: AuthStore, sid: str, ns: str, creds: dict[str, Any] | None, ids: range | list[int]
) -> None:
    session = store.session(sid, namespace=ns)
    await session.keys.set(pre_keys(ids))
    if creds is not None:
        await session.save_creds(creds)


async def test_ids_below_the_mark_minus_keep_go_exactly(on: Backend) -> None:
    ns = on.namespace
    async with on.open() as store:
        # Baileys: 1..100 uploaded, 101..105 made but not uploaded yet (next > first).
        creds = node_creds(firstUnuploadedPreKeyId=101, nextPreKeyId=106)
        await seed(store, "a", ns, creds, range(1, 106))
        await store.session("a", namespace=ns).keys.set({"session": {"x.0": b"s"}})
        report = await prune_prekeys(store, namespace=ns, keep=20)
        assert [(s.status, s.upload_mark, s.removed, s.kept) for s in report.sessions] == [
            ("pruned", 101, 79, 26)
        ]
        # 81 = 101 - 20 stays; so does 1, the id of Baileys' signed pre-key (creds keyId 1).
        assert await stored_ids(store, "a", ns) == {1, *range(81, 106)}
        assert await store.session("a", namespace=ns).keys.get("session", ["x.0"]) == {"x.0": b"s"}
        again = await prune_prekeys(store, namespace=ns, keep=20)
        assert (again.sessions[0].status, again.removed, again.kept) == ("clean", 0, 26)
        none_kept = await prune_prekeys(store, namespace=ns, keep=0)
        assert none_kept.removed == 20
        assert await stored_ids(store, "a", ns) == {1, *range(101, 106)}  # never at/above the mark


async def test_the_signed_pre_key_and_odd_ids_are_never_touched(on: Backend) -> None:
    ns = on.namespace
    async with on.open() as store:
        creds = node_creds(firstUnuploadedPreKeyId=50, nextPreKeyId=50)
        creds["signedPreKey"]["keyId"] = 7
        await seed(store, "s", ns, creds, range(1, 50))
        session = store.session("s", namespace=ns)
        await session.keys.set({"pre-key": {"007": {"n": 1}, "abc": {"n": 2}}})
        before, version = await session.load_versioned_creds()
        report = await prune_prekeys(store, namespace=ns, keep=10)
        assert (report.removed, report.kept) == (38, 13)  # 1..39 but 7; 7, 40..49, 007, abc
        ids = (await session.key_ids())["pre-key"]
        assert sorted(ids) == sorted(["7", "007", "abc", *map(str, range(40, 50))])
        assert await session.load_versioned_creds() == (before, version)  # creds not written


async def test_sessions_without_creds_or_mark_are_skipped_and_counted(on: Backend) -> None:
    ns = on.namespace
    snake = dataclasses.asdict(init_auth_creds())
    snake.update(first_unuploaded_pre_key_id=31, next_pre_key_id=31)
    no_mark = node_creds()
    del no_mark["firstUnuploadedPreKeyId"]
    async with on.open() as store:
        await seed(store, "bare", ns, None, range(1, 40))
        await seed(store, "nomark", ns, no_mark, range(1, 40))
        await seed(store, "py", ns, snake, range(1, 31))
        report = await prune_prekeys(store, namespace=ns, keep=10)
        by_id = {s.session_id: s for s in report.sessions}
        assert (report.no_creds, report.no_mark, report.in_use) == (1, 1, 0)
        assert (by_id["bare"].status, by_id["nomark"].status) == ("no_creds", "no_mark")
        assert (by_id["py"].status, by_id["py"].removed, by_id["py"].kept) == ("pruned", 19, 11)
        assert await stored_ids(store, "bare", ns) == set(range(1, 40))
        assert await stored_ids(store, "nomark", ns) == set(range(1, 40))
        only = await prune_prekeys(store, namespace=ns, session="nomark", keep=0)
        assert [s.session_id for s in only.sessions] == ["nomark"]


async def test_dry_run_writes_nothing(on: Backend) -> None:
    ns = on.namespace
    async with on.open() as store:
        await seed(
            store, "d", ns, node_creds(firstUnuploadedPreKeyId=61, nextPreKeyId=61), range(1, 61)
        )
        before = [i async for i in store.list_sessions(ns)]
        report = await prune_prekeys(store, namespace=ns, keep=30, dry_run=True)
        assert (report.dry_run, report.removed, report.kept) == (True, 29, 31)
        assert await stored_ids(store, "d", ns) == set(range(1, 61))
        assert [i async for i in store.list_sessions(ns)] == before  # not even touched


async def test_a_session_leased_elsewhere_is_skipped(on: Backend) -> None:
    ns = on.namespace
    leased = Backend(on.name, on.config.model_copy(update={"lease": "on", "cache": None}), ns)
    async with leased.open() as app:
        await seed(
            app, "live", ns, node_creds(firstUnuploadedPreKeyId=41, nextPreKeyId=41), range(1, 41)
        )
        await seed(
            app, "idle", ns, node_creds(firstUnuploadedPreKeyId=41, nextPreKeyId=41), range(1, 41)
        )
        assert await app.release("idle", namespace=ns)
        async with leased.open() as admin:
            report = await prune_prekeys(admin, namespace=ns, keep=10)
        by_id = {s.session_id: s for s in report.sessions}
        assert (by_id["live"].status, by_id["idle"].status, report.in_use) == (
            "in_use",
            "pruned",
            1,
        )
        assert await stored_ids(app, "live", ns) == set(range(1, 41))
        assert await stored_ids(app, "idle", ns) == {1, *range(31, 41)}
        await app.session("idle", namespace=ns).keys.set({"session": {"x.0": b"ok"}})  # released


async def test_keep_must_be_a_non_negative_int(backend_sqlite: Backend) -> None:
    async with backend_sqlite.open() as store:
        for bad in (-1, True, 1.5):
            with pytest.raises(errors.InvalidInputError):
                await prune_prekeys(store, keep=bad)  # type: ignore[arg-type]


def test_upload_mark_reads_both_flavours_and_takes_the_lower() -> None:
    assert upload_mark({"firstUnuploadedPreKeyId": 31, "nextPreKeyId": 40}) == 31
    assert upload_mark({"first_unuploaded_pre_key_id": 31, "next_pre_key_id": 20}) == 20
    assert upload_mark({"firstUnuploadedPreKeyId": "31"}) == 31
    for bad in ({}, {"firstUnuploadedPreKeyId": None}, {"firstUnuploadedPreKeyId": True}):
        assert upload_mark(bad) is None
    assert DEFAULT_KEEP == 1624


def test_the_command_json_and_text(backend_sqlite: Backend) -> None:
    url, ns = backend_sqlite.config.durable, backend_sqlite.namespace

    async def fill() -> None:
        async with backend_sqlite.open() as store:
            creds = node_creds(firstUnuploadedPreKeyId=2001, nextPreKeyId=2001)
            await seed(store, "big", ns, creds, range(1, 2001))
            await seed(store, "new", ns, None, range(1, 3))

    asyncio.run(fill())
    runner = CliRunner()
    args = ["--store", url, "--namespace", ns]
    dry = runner.invoke(prune_prekeys_command, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)
    assert (doc["dry_run"], doc["keep"], doc["removed"], doc["kept"]) == (True, 1624, 375, 1625)
    assert doc["skipped"] == {"no_creds": 1, "no_mark": 0, "in_use": 0}
    assert doc["sessions"][0] == {
        "namespace": ns,
        "session_id": "big",
        "status": "pruned",
        "upload_mark": 2001,
        "removed": 375,
        "kept": 1625,
    }
    assert doc["sessions"][1]["upload_mark"] is None
    done = runner.invoke(prune_prekeys_command, [*args, "--keep", "1000"])
    assert done.exit_code == 0, done.output
    assert (
        "2 session(s): 999 pre-key(s) removed, 1001 kept (margin 1000); skipped: 1 without creds"
        in done.stdout
    )
    missing = runner.invoke(prune_prekeys_command, [*args, "--session", "nope"])
    assert missing.exit_code == 1
    assert "no session" in missing.output
    negative = runner.invoke(prune_prekeys_command, [*args, "--keep", "-1"])
    assert negative.exit_code == 2
