"""Write-behind with the NATS JetStream outbox, on real servers (redis-server, nats-server -js).

What is proven here: a write is acknowledged only once the stream holds its entry (killed
broker: the write fails, nothing acknowledged is missing); the worker applies every entry and
the stream is trimmed once they are applied; a Redis that lost its data (FLUSHALL) loses no
acknowledged write (recovery replays the broker's entries of the old epoch); dead letters are
kept in the DLQ stream; the URL is validated without echoing credentials; and a part of the
contract suite runs over the NATS hybrid store.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.backends.nats import NatsTransport, decode_token, encode_token, parse_nats_url
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.cli import main
from tests._services.nats import (  # noqa: F401 - fixtures
    NatsServer,
    backend_hybrid_nats,
    nats_config,
    nats_server,
    unique_outbox,
)
from tests._services.redis import RedisServer
from tests.conftest import Backend

# A part of the contract suite, over the NATS hybrid store (the module's `backend` wins).
from tests.contract.test_concurrency import (  # noqa: F401
    test_baileys_write_pattern_loses_nothing,
    test_concurrent_cas_has_exactly_one_winner,
)
from tests.contract.test_creds import *  # noqa: F403
from tests.contract.test_key_listing import *  # noqa: F403
from tests.contract.test_keys import *  # noqa: F403
from tests.contract.test_leases import *  # noqa: F403
from tests.contract.test_purge import *  # noqa: F403
from tests.contract.test_sessions import *  # noqa: F403
from tests.contract.test_store_meta import *  # noqa: F403
from tests.integration._flaky import FlakySQLite

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def backend(backend_hybrid_nats: Backend) -> Backend:  # noqa: F811
    """Only the NATS hybrid store for the contract tests imported above."""
    return backend_hybrid_nats


def _transport(store: AuthStore) -> NatsTransport:
    transport = store._engine.transport
    assert isinstance(transport, NatsTransport)
    return transport


def _config(redis: RedisServer, nats: NatsServer, tmp_path: Path, **kw: object) -> StoreConfig:
    nats.start()
    return nats_config(redis.url, unique_outbox(nats.url), tmp_path / "s.db", **kw)


def test_tokens_are_reversible_and_valid() -> None:
    for value in ["", "a.b", "*", ">", "with space", "ünï", "x" * 200]:
        token = encode_token(value)
        assert decode_token(token) == value
        assert not set(token) & set(".*> \t"), token


def test_url_options_and_errors_never_echo_secrets() -> None:
    o = parse_nats_url("nats://u:s3cret@h1:4222,h2:4223?stream=S1&prefix=a.b&replicas=3")
    assert (o.servers, o.stream, o.prefix, o.replicas) == (("h1:4222", "h2:4223"), "S1", "a.b", 3)
    assert "s3cret" not in repr(o)
    assert "s3cret" not in o.describe()
    for bad in [
        "nats://u:s3cret@h1?stream=S",
        "nats://u:s3cret@h1:1?replicas=9",
        "nats://u:s3cret@h1:1?stream=a.b",
        "nats://u:s3cret@h1:1?color=red",
        "nats://u:s3cret@h1:1?ack_wait=x",
    ]:
        with pytest.raises(errors.ConfigError) as info:
            parse_nats_url(bad)
        assert "s3cret" not in str(info.value)
    with pytest.raises(errors.ConfigError):
        StoreConfig(durable="sqlite:///x.db", outbox="nats://h:1")  # needs write-behind


async def test_writes_reach_the_broker_then_the_durable_tier(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(redis_server, nats_server, tmp_path, outbox_worker=False)
    async with AuthStore(config) as store:
        session = store.session("id.with:dots@x+y=z", namespace="n.s")
        addr = SessionAddr("n.s", "id.with:dots@x+y=z")
        for i in range(20):
            await session.keys.set({"pre-key": {str(i): {"v": i}}})
        await session.keys.set({"pre-key": {"3": None}})
        held = await _transport(store).sessions()
        assert held == {addr: 21}
        assert await store.drain_outbox() == 21
        assert await _transport(store).sessions() == {}  # trimmed once applied
    durable = SQLiteDurable(tmp_path / "s.db")
    await durable.open()
    try:
        blobs = await durable.get_keys(addr, "pre-key", [str(i) for i in range(20)])
        assert sorted(blobs, key=int) == [str(i) for i in range(20) if i != 3]
    finally:
        await durable.close()


async def test_a_write_the_broker_did_not_store_is_not_acknowledged(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(redis_server, nats_server, tmp_path, outbox_worker=False, op_timeout=1.0)
    try:
        async with AuthStore(config) as store:
            keys = store.session("a", namespace="ns").keys
            await keys.set({"pre-key": {"1": {"v": 1}}})
            nats_server.stop()
            with pytest.raises(errors.UnavailableError):
                await keys.set({"pre-key": {"2": {"v": 2}}})
            nats_server.start()
            for _ in range(50):  # the client reconnects in the background
                try:
                    await keys.set({"pre-key": {"3": {"v": 3}}})
                    break
                except errors.UnavailableError:
                    continue
            else:
                pytest.fail("writes did not resume after the broker came back")
            assert await keys.get("pre-key", ["1", "3"]) == {"1": {"v": 1}, "3": {"v": 3}}
            await store.drain_outbox()
    finally:
        nats_server.start()


async def test_redis_data_loss_loses_no_acknowledged_write(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(redis_server, nats_server, tmp_path, outbox_worker=False)
    async with AuthStore(config) as store:
        for s in range(3):
            keys = store.session(f"s{s}", namespace="ns").keys
            for i in range(10):
                await keys.set({"pre-key": {str(i): {"s": s, "i": i}}})
    redis_server.flushall()  # the cache and its outbox are gone; the broker kept the entries
    config = config.model_copy(update={"outbox_worker": True})
    async with AuthStore(config) as store:
        assert store._engine.broker is not None
        assert store._engine.broker.recovered == 30
        for s in range(3):
            got = await store.session(f"s{s}", namespace="ns").keys.get(
                "pre-key", [str(i) for i in range(10)]
            )
            assert got == {str(i): {"s": s, "i": i} for i in range(10)}
        assert await _transport(store).sessions() == {}


async def test_dead_letters_go_to_the_dlq_stream(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(
        redis_server, nats_server, tmp_path, outbox_worker=False, outbox_max_attempts=1
    )
    durable = FlakySQLite(tmp_path / "s.db")
    store = AuthStore(config, durable=durable, cache=make_cache(config))
    async with store:
        addr = SessionAddr("ns", "poison")
        await store.session(addr.session_id, namespace=addr.namespace).keys.set(
            {"pre-key": {"1": {"v": 1}}}
        )
        durable.fail_with = errors.CorruptDataError("poison")
        await store.drain_outbox()
        durable.fail_with = None
        letters = await _transport(store).dead_letters(addr)
        assert [d.entry.writes[0].id for d in letters] == ["1"]
        assert "poison" in letters[0].error
        assert [a async for a in _transport(store).dlq_sessions()] == [addr]
        # the cache keeps serving the acknowledged value the durable tier did not take
        assert await store.session(addr.session_id, namespace=addr.namespace).keys.get(
            "pre-key", ["1"]
        ) == {"1": {"v": 1}}


async def test_a_reset_noticed_while_open_is_recovered_and_not_reported_lost(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """FLUSHALL with entries pending in this process: recovered from the broker, not lost."""
    config = _config(redis_server, nats_server, tmp_path)
    durable = FlakySQLite(tmp_path / "s.db")
    store = AuthStore(config, durable=durable, cache=make_cache(config))
    async with store:
        keys = store.session("a", namespace="ns").keys
        durable.fail_with = errors.UnavailableError("durable tier down")
        for i in range(10):
            await keys.set({"pre-key": {str(i): {"v": i}}})
        redis_server.flushall()
        with pytest.raises(errors.DataLossError):  # the reset is noticed: marked at first
            await keys.set({"pre-key": {"10": {"v": 10}}})
        durable.fail_with = None
        watch = store._engine.watch
        assert watch is not None
        for _ in range(200):
            if not watch.lost:
                break
            await asyncio.sleep(0.05)
        assert not watch.lost, "the broker recovery did not lift the lost mark"
        got = await keys.get("pre-key", [str(i) for i in range(10)])
        assert got == {str(i): {"v": i} for i in range(10)}
        await store.drain_outbox()
    assert sorted(await _durable_ids(tmp_path / "s.db"), key=int) == [str(i) for i in range(11)]


async def _durable_ids(path: Path) -> list[str]:
    durable = SQLiteDurable(path)
    await durable.open()
    try:
        ids = [str(i) for i in range(20)]
        return list(await durable.get_keys(SessionAddr("ns", "a"), "pre-key", ids))
    finally:
        await durable.close()


def test_cli_status_drain_and_dlq_with_the_nats_outbox(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(
        redis_server, nats_server, tmp_path, outbox_worker=False, outbox_max_attempts=1
    )
    durable = FlakySQLite(tmp_path / "s.db")

    async def write() -> None:
        store = AuthStore(config, durable=durable, cache=make_cache(config))
        async with store:
            await store.session("poison", namespace="ns").keys.set({"pre-key": {"1": {"v": 1}}})
            durable.fail_with = errors.CorruptDataError("rejected")
            await store.drain_outbox()
            durable.fail_with = None
            for i in range(5):
                await store.session("ok", namespace="ns").keys.set({"pre-key": {str(i): {"v": i}}})

    asyncio.run(write())
    assert config.cache is not None
    env = {
        "BAILEYS_STORE_CACHE": config.cache,
        "BAILEYS_STORE_WRITE_MODE": "write-behind",
        "BAILEYS_STORE_OUTBOX": config.outbox,
        "BAILEYS_STORE_OUTBOX_WORKER": "false",
    }
    cli = ["--store", config.durable, "outbox"]
    runner = CliRunner()
    result = runner.invoke(main, [*cli, "status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["ready_sessions"] == 1
    assert status["dead_letter_sessions"] == 1
    assert status["transport"]["name"] == "nats"
    assert status["transport"]["entries"] == 5
    assert status["transport"]["dead_letters"] == 1
    assert "127.0.0.1" in status["transport"]["where"]
    result = runner.invoke(main, [*cli, "drain"], env=env)
    assert result.exit_code == 0, result.output
    assert "Applied 5 outbox entries." in result.output
    result = runner.invoke(main, [*cli, "dlq", "list"], env=env)
    assert "rejected" in result.output
    result = runner.invoke(main, [*cli, "dlq", "retry", "--all"], env=env)
    assert result.exit_code == 0, result.output
    assert "0 dead letter(s) now" in result.output
    status = json.loads(runner.invoke(main, [*cli, "status", "--json"], env=env).output)
    assert status["transport"]["entries"] == 0
    assert status["transport"]["dead_letters"] == 0
    assert status["ready_sessions"] == 0
    assert status["dead_letter_sessions"] == 0


async def test_a_worker_elsewhere_trims_the_broker_log_while_entries_are_pending(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(redis_server, nats_server, tmp_path, outbox_worker=False, outbox_batch=10)
    addr = SessionAddr("ns", "busy")
    async with AuthStore(config) as writer, AuthStore(config) as other:
        keys = writer.session("busy", namespace="ns").keys
        for i in range(10):
            await keys.set({"pre-key": {str(i): {"v": i}}})
        tenth, _, _ = await writer.outbox.outbox_counters(addr)
        for i in range(10, 30):
            await keys.set({"pre-key": {str(i): {"v": i}}})
        worker = other._engine.worker
        assert worker is not None
        assert await worker.drain(addr, until=tenth) == 10  # no published positions known here
        assert await _transport(other).sessions() == {addr: 20}
        assert await other.drain_outbox() == 20
        assert await _transport(other).sessions() == {}


async def test_a_broker_outbox_is_not_ignored_over_another_cache(tmp_path: Path) -> None:
    from baileys_store.backends.memory import MemoryCache  # noqa: PLC0415

    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'm.db'}",
        cache="redis://127.0.0.1:1",
        write_mode="write-behind",
        outbox="nats://127.0.0.1:1",
    )
    with pytest.raises(errors.ConfigError, match="broker outbox needs the Redis cache"):
        AuthStore(config, durable=SQLiteDurable(tmp_path / "m.db"), cache=MemoryCache(10))


async def test_bench_broker_figures_shape(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from baileys_store.bench._broker import broker_figures  # noqa: PLC0415

    nats_server.start()
    figures = await broker_figures(redis_server.url, nats_server.url, tmp_path, n=80, sessions=2)
    for name in ("redis", "nats"):
        row = figures[name]
        assert 0 < row["set_p50_ms"] <= row["set_p99_ms"]
        assert row["lag_p99_ms"] > 0


async def test_a_deleted_session_leaves_nothing_in_the_broker(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(
        redis_server, nats_server, tmp_path, outbox_worker=False, outbox_max_attempts=1
    )
    durable = FlakySQLite(tmp_path / "s.db")
    async with AuthStore(config, durable=durable, cache=make_cache(config)) as store:
        session = store.session("gone", namespace="ns")
        await session.keys.set({"pre-key": {"0": {"v": 0}}})
        durable.fail_with = errors.CorruptDataError("poison")
        await store.drain_outbox()  # a dead letter, kept in the DLQ stream too
        durable.fail_with = None
        for i in range(1, 3):
            await session.keys.set({"pre-key": {str(i): {"v": i}}})
        transport = _transport(store)
        assert await transport.sessions() == {SessionAddr("ns", "gone"): 2}
        assert [a async for a in transport.dlq_sessions()] == [SessionAddr("ns", "gone")]
        assert await session.delete()
        assert await transport.sessions() == {}
        assert [a async for a in transport.dlq_sessions()] == []
        assert await session.keys.get("pre-key", ["0", "1", "2"]) == {}


async def test_a_new_lease_holder_applies_what_the_cache_lost_before_reading(
    redis_server: RedisServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Another process's pending entries, lost with Redis: the next holder reads them anyway."""
    config = _config(redis_server, nats_server, tmp_path, outbox_worker=False)
    async with AuthStore(config) as writer:
        keys = writer.session("w", namespace="ns").keys
        for i in range(10):
            await keys.set({"pre-key": {str(i): {"v": i}}})
    redis_server.flushall()  # its cache entries, outbox mirror and lease are gone
    async with AuthStore(config) as reader:  # no worker: only the lease path can recover
        got = await reader.session("w", namespace="ns").keys.get(
            "pre-key", [str(i) for i in range(10)]
        )
        assert got == {str(i): {"v": i} for i in range(10)}
