"""Dead letters on a real Redis over SQLite: what the cache keeps, and a retry that never rolls
a newer value back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._creds import creds_to_dict
from baileys_store.cli import main
from tests._services.redis import RedisServer
from tests.integration._backend_cases import opened
from tests.integration._flaky import FlakySQLite
from tests.integration.test_hybrid import (
    ADDR,
    SID,
    durable_value,
    flaky_store,
    redis_cache,
)


async def _dead_letter_index(store: AuthStore) -> list[object]:
    return [a async for a in redis_cache(store).outbox.dlq_sessions()]


def _wb_store(server: RedisServer, tmp_path: Path) -> tuple[AuthStore, FlakySQLite, StoreConfig]:
    """A write-behind store whose first failed apply is a dead letter (worker off)."""
    return flaky_store(server, tmp_path, write_mode="write-behind", outbox_max_attempts=1)


async def _kill_next_apply(
    store: AuthStore, durable: FlakySQLite, error: errors.StoreError
) -> None:
    """Drain with the durable tier rejecting the head entry once (max attempts 1: dead)."""
    durable.fail_with = error
    await store.drain_outbox()
    durable.fail_with = None


async def test_retry_requeues_current_records_and_drops_superseded(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, _ = _wb_store(redis_server, tmp_path)
    async with opened(store):
        keys = store.session(SID).keys
        await keys.set({"session": {"c": b"c0"}})
        await store.drain_outbox()
        # One entry: a new record, one a later write replaces, a delete.
        await keys.set({"session": {"a": b"a1", "b": b"b1", "c": None}})
        await _kill_next_apply(store, durable, errors.CorruptDataError("rejected"))
        assert len(await redis_cache(store).outbox.dead_letters(ADDR)) == 1
        await keys.set({"session": {"b": b"b2"}})  # applied past the dead letter
        assert await store.drain_outbox() == 1
        assert await durable_value(store, "session", "b") == b"b2"
        assert await durable_value(store, "session", "a") is None  # the durable tier lacks it
        # The cache keeps serving the acknowledged values, tombstone included, with no TTL.
        got = await keys.get("session", ["a", "b", "c"])
        assert got == {"a": b"a1", "b": b"b2"}
        client = redis_cache(store).runner.client
        assert await client.pttl(redis_cache(store).runner.base(ADDR) + "k:session") == -1

        done = await store.retry_dead_letters(SID)
        assert (done.letters, done.records, done.superseded) == (1, 2, 1)
        assert await store.drain_outbox() == 1
        assert await durable_value(store, "session", "a") == b"a1"
        assert await durable_value(store, "session", "b") == b"b2"  # not rolled back to b1
        assert await durable_value(store, "session", "c") is None
        assert await redis_cache(store).outbox.dead_letters(ADDR) == []
        assert await _dead_letter_index(store) == []
        # Nothing left: the session's cache gets its TTLs back.
        assert await client.pttl(redis_cache(store).runner.base(ADDR) + "k:session") > 0
        again = await store.retry_dead_letters(SID)
        assert (again.letters, again.records, again.seq) == (0, 0, 0)


async def test_retry_of_a_creds_save_and_a_poison_that_fails_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, _ = _wb_store(redis_server, tmp_path)
    async with opened(store):
        session = store.session(SID)
        creds = {"registrationId": 7, "noiseKey": {"private": b"\x01" * 32, "public": b"\x02" * 32}}
        version = await session.save_creds(creds, expected_version=0)
        await _kill_next_apply(store, durable, errors.CorruptDataError("rejected"))
        assert await store.durable.load_creds(ADDR) is None
        done = await store.retry_dead_letters(SID)
        assert (done.letters, done.records, done.superseded) == (1, 1, 0)
        # Still poison: it goes back to the dead letters, nothing is lost.
        await _kill_next_apply(store, durable, errors.CorruptDataError("still rejected"))
        letters = await redis_cache(store).outbox.dead_letters(ADDR)
        assert len(letters) == 1
        assert "still rejected" in letters[0].error
        await store.retry_dead_letters(SID)
        await store.drain_outbox()
        record = await store.durable.load_creds(ADDR)
        assert record is not None
        assert record.version == version
        assert await session.load_creds() == creds_to_dict(creds)


async def test_dead_letters_survive_a_takeover_and_go_with_a_delete(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, durable, config = _wb_store(redis_server, tmp_path)
    async with opened(store):
        await store.session(SID).keys.set({"session": {"a": b"a1"}})
        await _kill_next_apply(store, durable, errors.CorruptDataError("rejected"))
        assert await store.release(SID)
    # Another process takes the session over: the cache is not reset (it holds the only copy).
    async with opened(AuthStore(config)) as other:
        assert await other.session(SID).keys.get("session", ["a"]) == {"a": b"a1"}
        await other.session(SID).keys.set({"session": {"z": b"z"}})  # takes the lease
        assert await other.session(SID).keys.get("session", ["a"]) == {"a": b"a1"}
        assert await other.session(SID).delete()
        assert await redis_cache(other).outbox.dead_letters(ADDR) == []
        assert await _dead_letter_index(other) == []
        assert await other.session(SID).keys.get("session", ["a", "z"]) == {}


async def test_retry_needs_an_outbox(tmp_path: Path) -> None:
    async with AuthStore(StoreConfig(durable=f"sqlite:///{tmp_path / 'x.db'}")) as store:
        with pytest.raises(errors.ConfigError, match="redis"):
            await store.retry_dead_letters(SID)


def test_cli_dlq_list_and_retry(redis_server: RedisServer, tmp_path: Path) -> None:
    store, durable, config = _wb_store(redis_server, tmp_path)

    async def make_dead_letter() -> None:
        async with opened(store):
            await store.session(SID).keys.set({"session": {"a": b"a1"}})
            await _kill_next_apply(store, durable, errors.CorruptDataError("rejected"))

    asyncio.run(make_dead_letter())
    assert config.cache is not None
    env = {"BAILEYS_STORE_CACHE": config.cache, "BAILEYS_STORE_WRITE_MODE": "write-behind"}
    cli = [*("--store", config.durable), "outbox", "dlq"]
    runner = CliRunner()
    result = runner.invoke(main, [*cli, "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output  # the error (the table may wrap it)
    result = runner.invoke(main, [*cli, "retry"], env=env)
    assert result.exit_code != 0
    assert "SESSION_ID or --all" in result.output
    result = runner.invoke(main, [*cli, "retry", "--all"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 record(s) requeued, 0 superseded; 0 dead letter(s) now" in result.output
    result = runner.invoke(main, [*cli, "list"], env=env)
    assert "No dead letters." in result.output

    async def durable_now() -> object:
        async with opened(AuthStore(config)) as fresh:
            return await durable_value(fresh, "session", "a")

    assert asyncio.run(durable_now()) == b"a1"
