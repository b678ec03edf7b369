"""``backup`` / ``restore``: the file round trips between backends, and every damage is refused."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from baileys_store import AuthStore, StoreConfig
from baileys_store.cli._backup import backup_command, restore_command
from baileys_store.errors import ConfigError, CorruptDataError
from baileys_store.integrations._backup import backup, restore
from tests._services.postgres import PostgresDatabase, PostgresServer, with_database
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.conftest import Backend
from tests.conftest import test_master_key as make_master_key
from tests.creds_data import node_creds

MARKER = b"plaintext-marker-7f3a9c"  # a known value: must never appear in an encrypted backup


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)


def cli(command: Any, *args: str, **env: str) -> Result:
    return CliRunner().invoke(command, list(args), env=env or None)


def run(config: StoreConfig, fn: Any) -> Any:
    async def main() -> Any:
        async with AuthStore(config) as store:
            return await fn(store)

    return asyncio.run(main())


async def fill(store: AuthStore, namespace: str, sessions: int = 3, keys: int = 40) -> None:
    """Sessions with creds and keys of several types (one with keys only, no creds)."""
    for n in range(sessions):
        auth = store.session(f"s{n}", namespace=namespace)
        await auth.keys.set(
            {
                "pre-key": {
                    str(i): {"public": os.urandom(32), "private": MARKER} for i in range(keys)
                },
                "session": {f"{n}.0": {"record": MARKER + os.urandom(900)}},
                "sender-key": {"g@g.us::a::0": os.urandom(100)},
            }
        )
        if n != sessions - 1:
            await auth.save_creds(node_creds(registrationId=n + 1))


async def content(store: AuthStore, namespace: str) -> dict[str, Any]:
    """Every session of the namespace, decoded: ``{sid: (creds, {type: {id: value}})}``."""
    out: dict[str, Any] = {}
    async for info in store.list_sessions(namespace):
        auth = store.session(info.session_id, namespace=namespace)
        ids = await auth.key_ids()
        values = {t: await auth.keys.get(t, i) for t, i in ids.items()}
        out[info.session_id] = (await auth.load_creds(), values)
    return out


def sqlite(tmp_path: Path, name: str = "src.db", **extra: Any) -> StoreConfig:
    return StoreConfig(durable=f"sqlite:///{tmp_path / name}", cache=None, **extra)


@pytest.fixture
def source(tmp_path: Path) -> tuple[StoreConfig, dict[str, Any]]:
    """An SQLite store with three sessions in namespace ``ns1``, and their content."""
    config = sqlite(tmp_path)

    async def make(store: AuthStore) -> dict[str, Any]:
        await fill(store, "ns1")
        return await content(store, "ns1")

    return config, run(config, make)


@pytest.fixture
def backup_file(tmp_path: Path, source: tuple[StoreConfig, dict[str, Any]]) -> Path:
    path = tmp_path / "b.bsb"
    result = cli(backup_command, str(path), "--store", source[0].durable)
    assert result.exit_code == 0, result.output
    return path


def test_sqlite_to_postgres_round_trip_is_equal(
    backup_file: Path, source: tuple[StoreConfig, dict[str, Any]], postgres_db: PostgresDatabase
) -> None:
    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600
    assert not list(backup_file.parent.glob(".b.bsb.*"))  # no temp file left behind
    result = cli(restore_command, str(backup_file), "--store", postgres_db.dsn)
    assert result.exit_code == 0, result.output
    dest = StoreConfig(durable=postgres_db.dsn, cache=None)
    assert run(dest, lambda s: content(s, "ns1")) == source[1]
    # Restoring again: every session exists now, refused without --replace, nothing written.
    again = cli(restore_command, str(backup_file), "--store", postgres_db.dsn, "--json")
    assert again.exit_code == 1
    doc = json.loads(again.stdout)
    assert (doc["ok"], doc["restored"]) == (False, 0)
    assert doc["existing"] == ["ns1/s0", "ns1/s1", "ns1/s2"]
    # Back to SQLite from PostgreSQL: the same file format either way.
    out = backup_file.parent / "pg.bsb"
    assert (
        cli(backup_command, str(out), "--store", postgres_db.dsn, "--namespace", "ns1").exit_code
        == 0
    )
    target = sqlite(backup_file.parent, "back.db")
    run(target, lambda s: restore(s, out))
    assert run(target, lambda s: content(s, "ns1")) == source[1]


def test_existing_sessions_refused_then_replaced(
    backup_file: Path, source: tuple[StoreConfig, dict[str, Any]]
) -> None:
    config = source[0]

    async def change(store: AuthStore) -> None:
        await store.session("s0", namespace="ns1").keys.set({"pre-key": {"999": {"x": b"new"}}})

    run(config, change)
    refused = cli(restore_command, str(backup_file), "--store", config.durable)
    assert refused.exit_code == 1
    assert "already exist" in refused.output
    assert "999" in run(config, lambda s: s.session("s0", namespace="ns1").key_ids())["pre-key"]
    replaced = cli(
        restore_command, str(backup_file), "--store", config.durable, "--replace", "--json"
    )
    assert replaced.exit_code == 0, replaced.output
    doc = json.loads(replaced.stdout)
    assert (doc["ok"], doc["restored"], doc["replaced"], doc["verified"]) == (True, 3, 3, True)
    assert run(config, lambda s: content(s, "ns1")) == source[1]  # the extra key is gone


def test_dry_run_verifies_and_writes_nothing(backup_file: Path, tmp_path: Path) -> None:
    dest = sqlite(tmp_path, "dest.db")
    run(dest, lambda s: asyncio.sleep(0))  # an empty store
    result = cli(restore_command, str(backup_file), "--store", dest.durable, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "ok", "file", "format_version", "created_at", "source", "verified", "dry_run",
        "sessions", "keys", "creds", "existing", "restored", "replaced", "in_use", "seconds",
        "error",
    }  # fmt: skip
    assert (doc["dry_run"], doc["sessions"], doc["creds"], doc["keys"]) == (True, 3, 2, 3 * 42)
    assert doc["source"] == {"encryption": "none", "key_ids": []}
    assert run(dest, lambda s: content(s, "ns1")) == {}


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["record", "manifest", "footer", "header", "truncated", "cut"])
def test_damaged_file_is_refused_and_nothing_written(
    backup_file: Path, tmp_path: Path, where: str
) -> None:
    size = backup_file.stat().st_size
    if where == "truncated":
        backup_file.write_bytes(backup_file.read_bytes()[: size // 2])
    elif where == "cut":
        backup_file.write_bytes(backup_file.read_bytes()[:-1])
    else:
        at = {"record": size // 3, "manifest": size - 100, "footer": size - 30, "header": 9}[where]
        _flip(backup_file, at)
    dest = sqlite(tmp_path, "dest.db")
    run(dest, lambda s: asyncio.sleep(0))
    for extra in ((), ("--dry-run",)):
        result = cli(restore_command, str(backup_file), "--store", dest.durable, *extra)
        assert result.exit_code == 1
        line = result.output.strip()
        assert line.startswith("Error: "), result.output
        assert "\n" not in line, result.output
        assert "damaged" in line or "not a baileys-store backup" in line or "format" in line
    assert run(dest, lambda s: content(s, "ns1")) == {}


def test_foreign_missing_file_and_bad_url(backup_file: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.bsb"
    foreign.write_bytes(b"SQLite format 3\x00" + bytes(200))
    dest = tmp_path / "never.db"
    for path in (foreign, tmp_path / "missing.bsb"):
        result = cli(restore_command, str(path), "--store", f"sqlite:///{dest}")
        assert result.exit_code == 1
        assert result.output.startswith("Error: ")
        assert len(result.output.strip().splitlines()) == 1
    assert not dest.exists()  # a bad file never creates (or opens) the destination
    bad = cli(restore_command, str(backup_file), "--store", "nosuch://x", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout.splitlines()[0])["ok"] is False
    # backup: a missing store is not created; an existing FILE is kept unless --overwrite.
    assert (
        cli(backup_command, str(tmp_path / "x.bsb"), "--store", f"sqlite:///{dest}").exit_code == 1
    )
    assert not dest.exists()
    assert not (tmp_path / "x.bsb").exists()
    before = backup_file.read_bytes()
    store = f"sqlite:///{tmp_path / 'src.db'}"
    assert cli(backup_command, str(backup_file), "--store", store).exit_code == 1
    assert backup_file.read_bytes() == before
    assert cli(backup_command, str(backup_file), "--store", store, "--overwrite").exit_code == 0


@pytest.fixture
def fresh_pg(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of its own (its encryption mode binds at first open)."""
    name = postgres_server.create_database()
    try:
        yield with_database(postgres_server.admin_dsn, name)
    finally:
        postgres_server.drop_database(name)


def test_encrypted_backup_stays_encrypted_and_needs_its_key(
    tmp_path: Path, fresh_pg: str, backend_postgres: Backend
) -> None:
    key = make_master_key()
    enc = {"encryption": "aes-256-gcm", "master_keys": {7: key}}
    src = sqlite(tmp_path, "enc.db", **enc)
    ns = backend_postgres.namespace

    async def make(store: AuthStore) -> dict[str, Any]:
        await fill(store, ns, sessions=2)
        return await content(store, ns)

    want = run(src, make)
    path = tmp_path / "enc.bsb"
    report = run(src, lambda s: backup(s, path))
    assert (report.key_ids, report.encryption, report.sessions) == ((7,), "aes-256-gcm", 2)
    raw = path.read_bytes()
    assert MARKER not in raw
    assert b"registrationId" not in raw

    # Without the key: a clear error naming key id 7, nothing written.
    plain = backend_postgres.config
    with pytest.raises(ConfigError, match="master key id\\(s\\) 7"):
        run(plain, lambda s: restore(s, path))
    assert run(plain, lambda s: content(s, ns)) == {}
    # A different key under the same id: refused when a record is opened, nothing written.
    wrong = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'w.db'}",
        cache=None,
        encryption="aes-256-gcm",
        master_keys={7: make_master_key()},
    )
    with pytest.raises(ConfigError, match="master key 7"):
        run(wrong, lambda s: restore(s, path))
    assert run(wrong, lambda s: content(s, ns)) == {}
    # With the key (PostgreSQL, encrypted): equal, and the stored blobs are the backup's.
    dest = StoreConfig(durable=fresh_pg, cache=None, **enc)
    assert run(dest, lambda s: content(s, ns)) == {}
    result = run(dest, lambda s: restore(s, path))
    assert (result.ok, result.restored) == (True, 2)
    assert run(dest, lambda s: content(s, ns)) == want


def test_backup_includes_pending_write_behind_entries(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    hybrid = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'wb.db'}",
        cache=cache,
        write_mode="write-behind",
        outbox_worker=False,
    )
    path = tmp_path / "wb.bsb"

    async def written_then_backed_up(store: AuthStore) -> Any:
        await fill(store, "wb", sessions=2, keys=5)
        # Nothing drained yet: the durable tier has no session.
        assert [i async for i in store.durable.list_sessions("wb")] == []
        report = await backup(store, path)
        return report, await content(store, "wb")

    report, want = run(hybrid, written_then_backed_up)
    assert (report.sessions, report.keys, report.creds) == (2, 2 * 7, 1)
    # Restore into a hybrid store (Redis cache, write-through with leases) and read through it.
    other = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'h.db'}",
        cache=with_query(redis_server.url, prefix=unique_prefix(), ttl="600"),
    )

    async def restored(store: AuthStore) -> Any:
        # Read before the restore: whatever the cache learnt must not hide the restored data.
        auth = store.session("s0", namespace="wb")
        assert (await auth.keys.get("pre-key", ["0"]), await auth.load_creds()) == ({}, None)
        done = await restore(store, path)
        assert done.ok
        return await content(store, "wb")

    assert run(other, restored) == want
    with pytest.raises(ConfigError, match="needs leases"):
        run(other.model_copy(update={"lease": "off"}), lambda s: restore(s, path, replace=True))


def test_corrupt_manifest_is_a_store_error(backup_file: Path, tmp_path: Path) -> None:
    data = backup_file.read_bytes()
    with pytest.raises(CorruptDataError):
        run(sqlite(tmp_path, "d.db"), lambda s: restore(s, _write(tmp_path, data[:-48])))


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "cut.bsb"
    path.write_bytes(data)
    return path
