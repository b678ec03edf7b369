"""MongoDB backend on a real server (SecantusDB started by the harness, or ``MONGODB_URI``).

The durable contract itself runs in ``tests/contract/test_durable_*.py``; the layout, schema and
migrations are in ``test_mongodb_schema.py``. Here: the commands sent, injected failures, URLs,
secrets and outages. Failure injection uses the server's ``failCommand`` fail point, so those
tests run on private SecantusDB processes (one presenting a replica set, one ``--standalone``)
that the harness starts with test commands enabled, never on an external deployment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from baileys_store import StoreConfig, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.backends._registry import make_durable
from baileys_store.backends.mongodb import MongoDurable, from_config
from baileys_store.backends.mongodb._schema import key_doc_id
from baileys_store.backends.mongodb._url import parse_mongo_url
from tests._services.mongo import MongoServer, free_port, start_secantus
from tests.integration._backend_cases import assert_not_leaked
from tests.integration._backend_cases import opened as opened_backend

pytestmark = pytest.mark.timeout(120)
ADDR = SessionAddr("clinic-1/ch-1", "5511999")


class Commands(monitoring.CommandListener):
    """Names of the commands the driver sent (command monitoring)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def opened(url: str, **kw: Any) -> contextlib.AbstractAsyncContextManager[MongoDurable]:
    return opened_backend(MongoDurable(url, **kw))


@contextlib.contextmanager
def failpoint(server: MongoServer, times: int = 1, **data: Any) -> Iterator[None]:
    """Arm ``failCommand`` for the next ``times`` matching commands; always disarm."""
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    try:
        client.admin.command("configureFailPoint", "failCommand", mode={"times": times}, data=data)
        yield
    finally:
        client.admin.command("configureFailPoint", "failCommand", mode="off")
        client.close()


def raw(server: MongoServer) -> MongoClient[dict[str, Any]]:
    return MongoClient(server.uri)


@contextlib.contextmanager
def secantus(*, standalone: bool = False) -> Iterator[MongoServer]:
    """A private SecantusDB process, discarded after the block."""
    server = start_secantus(standalone=standalone)
    try:
        yield server
    finally:
        server.discard()


@pytest.fixture(scope="module")
def private_server() -> Iterator[MongoServer]:
    with secantus() as server:
        yield server


@pytest.fixture(scope="module")
def standalone_server() -> Iterator[MongoServer]:
    with secantus(standalone=True) as server:
        yield server


async def test_round_trips_one_bulk_write_and_one_find(mongo_server: MongoServer) -> None:
    seen = Commands()
    async with opened(mongo_server.url(), client_options={"event_listeners": [seen]}) as b:
        assert b.transactions  # SecantusDB presents a single-node replica set
        writes = [
            KeyWrite(t, str(i), b"v%d" % i) for t in ("pre-key", "session") for i in range(75)
        ]
        seen.names.clear()
        await b.write_keys(ADDR, writes)
        # Unfenced: the bulk write and its commit, then the session document's touch.
        assert seen.names == ["update", "commitTransaction", "update"]

        seen.names.clear()
        mixed = [KeyWrite("pre-key", str(i), None) for i in range(5)]
        mixed += [KeyWrite("identity-key", "x", b"id"), KeyWrite("session", "0", None)]
        await b.write_keys(ADDR, mixed, fence=7)
        # Fenced: fence check + touch, upserts, deletes, commit: all in one transaction.
        assert seen.names == ["update", "update", "delete", "commitTransaction"]

        seen.names.clear()
        got = await b.get_keys(ADDR, "pre-key", [str(i) for i in range(150)])
        assert seen.names == ["find"]  # 150 ids > the default first batch (101): no getMore
        assert set(got) == {str(i) for i in range(5, 75)}


# -- atomicity and retries, with injected server failures ----------------------------------

WRITES = [
    KeyWrite("pre-key", "2", b"new2"),
    KeyWrite("session", "s", b"new-s"),
    KeyWrite("pre-key", "1", None),
]


async def _seed(b: MongoDurable) -> None:
    await b.write_keys(
        ADDR, [KeyWrite("pre-key", "1", b"old1"), KeyWrite("session", "s", b"old-s")], fence=3
    )


async def _state(b: MongoDurable) -> dict[str, bytes]:
    pre = await b.get_keys(ADDR, "pre-key", ["1", "2"])
    return {
        **{f"pre-key/{k}": v for k, v in pre.items()},
        **{f"session/{k}": v for k, v in (await b.get_keys(ADDR, "session", ["s"])).items()},
    }


async def test_failure_midway_leaves_nothing(private_server: MongoServer) -> None:
    async with opened(private_server.url()) as b:
        assert b.transactions
        await _seed(b)
        before = await _state(b)
        # The upserts (one update command) succeed, then the delete command fails for good.
        with (
            failpoint(private_server, failCommands=["delete"], errorCode=2),
            pytest.raises(errors.UnavailableError),
        ):
            await b.write_keys(ADDR, WRITES, fence=4)
        assert await _state(b) == before
        await b.write_keys(ADDR, [KeyWrite("session", "s", b"still-3")], fence=3)  # not raised


async def test_transient_transaction_error_is_retried(private_server: MongoServer) -> None:
    seen = Commands()
    async with opened(private_server.url(), client_options={"event_listeners": [seen]}) as b:
        await _seed(b)
        seen.names.clear()
        with failpoint(
            private_server,
            failCommands=["delete"],
            errorCode=112,
            errorLabels=["TransientTransactionError"],
        ):
            await b.write_keys(ADDR, WRITES, fence=4)
        first = ["update", "update", "delete", "abortTransaction"]  # touch, bulk upserts, deletes
        retry = ["update", "update", "update", "delete", "commitTransaction"]  # fence raised first
        assert seen.names == first + retry
        assert await _state(b) == {"pre-key/2": b"new2", "session/s": b"new-s"}


async def test_cas_recognises_its_own_applied_write(private_server: MongoServer) -> None:
    # retryWrites=false: the driver does not retry, so our layer sees the error of a write that
    # was applied, retries, misses the version, and must recognise its own blob.
    async with opened(private_server.url(retryWrites="false")) as b:
        v = await b.save_creds(ADDR, b"one", expected_version=0)
        wce = {"code": 64, "errmsg": "injected", "errorLabels": ["RetryableWriteError"]}
        with failpoint(private_server, failCommands=["findAndModify"], writeConcernError=wce):
            assert await b.save_creds(ADDR, b"two", expected_version=v) == v + 1
        creds = await b.load_creds(ADDR)
        assert creds is not None
        assert (creds.blob, creds.version) == (b"two", v + 1)


async def test_standalone_runs_ordered_idempotent_batches(
    standalone_server: MongoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with opened(standalone_server.url()) as b:
        assert not b.transactions
        assert any("standalone" in r.getMessage() for r in caplog.records)
        await _seed(b)
        with pytest.raises(errors.FencedError):
            await b.write_keys(ADDR, WRITES, fence=2)
        assert await _state(b) == {"pre-key/1": b"old1", "session/s": b"old-s"}
        # The documented weaker guarantee: a failure midway leaves a prefix applied...
        with (
            failpoint(standalone_server, failCommands=["delete"], errorCode=2),
            pytest.raises(errors.UnavailableError),
        ):
            await b.write_keys(ADDR, WRITES, fence=4)
        assert await _state(b) == {
            "pre-key/1": b"old1",
            "pre-key/2": b"new2",
            "session/s": b"new-s",
        }
        # ...and re-running the same call converges.
        await b.write_keys(ADDR, WRITES, fence=4)
        assert await _state(b) == {"pre-key/2": b"new2", "session/s": b"new-s"}
        # A dropped connection mid-batch is retried by the backend itself.
        with failpoint(standalone_server, failCommands=["delete"], closeConnection=True):
            await b.write_keys(
                ADDR, [KeyWrite("session", "t", b"t"), KeyWrite("pre-key", "2", None)]
            )
        assert await _state(b) == {"session/s": b"new-s"}


# -- URLs, secrets, outages ----------------------------------------------------------------


def test_url_options_and_database() -> None:
    s = parse_mongo_url("mongodb://h1:1,h2:2/mydb?maxPoolSize=5&replicaSet=rs0", op_timeout=2.5)
    assert s.database == "mydb"
    assert s.client_defaults["serverSelectionTimeoutMS"] == 2500
    assert s.client_defaults["retryWrites"] is True
    assert s.client_defaults["retryReads"] is True
    s = parse_mongo_url("mongodb://h/?serverSelectionTimeoutMS=100&RETRYWRITES=false", op_timeout=9)
    assert s.database == "baileys_store"
    assert "serverSelectionTimeoutMS" not in s.client_defaults  # the URL's value wins
    assert "retryWrites" not in s.client_defaults


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("mongodb://h/db?maxPoolSzie=5", "maxpoolszie"),
        ("mongodb://h/db?maxPoolSize=many", "maxpoolsize"),
        ("mongodb://h/my.db", "database name"),
        ("mongodb:///db", "no host"),
        ("mongodb://h/db?novalue", "NAME=VALUE"),
    ],
)
def test_bad_urls(bad: str, needle: str) -> None:
    with pytest.raises(errors.ConfigError, match=needle):
        parse_mongo_url(bad, op_timeout=1)


def test_registry_and_roles() -> None:
    cfg = StoreConfig(durable="mongodb+srv://u:p@cluster0.example.invalid/bs", cache=None)
    backend = make_durable(cfg)  # no DNS lookup until open()
    assert isinstance(backend, MongoDurable)
    assert backend.database == "bs"
    with pytest.raises(errors.ConfigError, match="durable tier"):
        from_config(cfg, "cache")


async def test_no_password_in_errors(mongo_server: MongoServer) -> None:
    secret, key_pw = "Sup3rS3cretPW", "TlsKeyS3cret"
    with pytest.raises(errors.ConfigError) as bad_option:
        MongoDurable(
            f"mongodb://user:{secret}@h/db?tlsCertificateKeyFilePassword={key_pw}&maxPoolSize=x"
        )
    port = free_port()
    down = MongoDurable(f"mongodb://user:{secret}@127.0.0.1:{port}/db?serverSelectionTimeoutMS=300")
    with pytest.raises(errors.UnavailableError) as unreachable:
        await down.open()
    # SecantusDB without --auth answers a login with AuthenticationFailed: a real driver error.
    host = mongo_server.uri.split("//", 1)[1].split("/", 1)[0]
    wrong = MongoDurable(f"mongodb://user:{secret}@{host}/db?authSource=admin")
    with pytest.raises(errors.UnavailableError) as auth:
        await wrong.open()
    for exc in (bad_option.value, unreachable.value, auth.value):
        assert_not_leaked(exc, secret, key_pw)


async def test_write_errors_carry_no_key_values(mongo_server: MongoServer) -> None:
    # A foreign document squatting on a key's _id makes the upsert fail with E11000, and the
    # server's error document would echo the whole replacement, value included.
    secret = b"KEY-MATERIAL-7f3a9c"
    async with opened(mongo_server.url(), attempts=2) as b:
        with raw(mongo_server) as client:
            client[b.database].bs_keys.insert_one(
                {"_id": key_doc_id(ADDR, "session", "1"), "namespace": "elsewhere"}
            )
        with pytest.raises(errors.UnavailableError, match="E11000") as info:
            await b.write_keys(ADDR, [KeyWrite("session", "1", secret)])
    assert_not_leaked(info.value, secret.decode())


async def test_outage_raises_unavailable_never_empty() -> None:
    with secantus() as server:
        url = server.url(serverSelectionTimeoutMS="400", connectTimeoutMS="400")
        async with opened(url, op_timeout=2) as b:
            await b.write_keys(ADDR, [KeyWrite("session", "1", b"x")])
            await b.save_creds(ADDR, b"c")
            assert (await b.check()).ok
            server.stop()
            for call in (
                b.get_keys(ADDR, "session", ["1"]),
                b.load_creds(ADDR),
                b.write_keys(ADDR, [KeyWrite("session", "2", b"y")]),
            ):
                with pytest.raises(errors.UnavailableError):
                    await call
            health = await b.check()
            assert not health.ok
            assert health.backend == "mongodb"
