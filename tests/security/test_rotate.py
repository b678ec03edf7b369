"""``keys rotate`` authenticates every record and never reports success over bad ones.

Before issue 12 (item 7) a rotation over blobs it could not authenticate reported
``rewritten=0, current=N``: a current-looking header was enough. Now every record is decoded,
failures are counted (and left as they are), the CLI exits 1, and ``--verify`` only checks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.cli import main
from tests.conftest import Backend
from tests.security._forge import K1, K2, Variants, plaintext_key

IDS = [str(n) for n in range(20)]


async def seed(store: AuthStore, namespace: str) -> None:
    for sid in ("a", "b"):
        sess = store.session(sid, namespace=namespace)
        await sess.save_creds({"registrationId": 1})
        await sess.keys.set({"pre-key": {i: {"n": i} for i in IDS}})


async def tamper(store: AuthStore, addr: SessionAddr) -> dict[str, bytes]:
    """Flip a ciphertext byte of pre-key 0 and plant a plaintext pre-key 1; returns them."""
    blob = bytearray((await store.durable.get_keys(addr, "pre-key", ["0"]))["0"])
    blob[-1] ^= 1
    bad = {"0": bytes(blob), "1": plaintext_key(addr, "pre-key", "1", {"n": "evil"})}
    await store.durable.write_keys(addr, [KeyWrite("pre-key", i, b) for i, b in bad.items()])
    return bad


async def key_ids(store: AuthStore, addr: SessionAddr) -> set[int]:
    blobs = await store.durable.get_keys(addr, "pre-key", IDS)
    return {store.codec.key_id_of(b) for b in blobs.values()}


async def test_rotation_counts_records_it_cannot_authenticate(backend: Backend) -> None:
    v = Variants(backend, encryption="aes-256-gcm", master_keys={1: K1})
    async with v.open() as store:
        await seed(store, v.namespace)
        await store.drain_outbox()
        bad = await tamper(store, v.addr("a"))
        try:
            same_key = await store.rotate_keys()  # everything looks current
        except errors.ConfigError:
            pytest.skip(f"{backend.name} cannot list keys")
        # 2 x (20 pre-keys + creds) = 42 records: 2 fail, none is "current" by its header alone
        assert (same_key.failed, same_key.current, same_key.rewritten) == (2, 40, 0)
    async with v.open(master_keys={1: K1, 2: K2}) as store:
        report = await store.rotate_keys()
        assert (report.failed, report.rewritten, report.current) == (2, 40, 0)
        addr = v.addr("a")
        left = await store.durable.get_keys(addr, "pre-key", ["0", "1"])
        assert left == bad  # left exactly as they were
        assert await key_ids(store, v.addr("b")) == {2}
        again = await store.rotate_keys()
        assert (again.failed, again.rewritten, again.current) == (2, 0, 40)


async def test_verify_checks_and_writes_nothing(backend: Backend) -> None:
    v = Variants(backend, encryption="aes-256-gcm", master_keys={1: K1})
    async with v.open() as store:
        await seed(store, v.namespace)
        await store.drain_outbox()
    async with v.open(master_keys={1: K1, 2: K2}) as store:
        try:
            report = await store.rotate_keys(verify=True)
        except errors.ConfigError:
            pytest.skip(f"{backend.name} cannot list keys")
        assert (report.failed, report.rewritten, report.current, report.sessions) == (0, 42, 0, 2)
        assert await key_ids(store, v.addr("a")) == {1}  # nothing re-encrypted
        await tamper(store, v.addr("b"))
        report = await store.rotate_keys(verify=True)
        assert (report.failed, report.rewritten) == (2, 40)


def cli(db: Path, *args: str, **env: str) -> Any:
    base = {"BAILEYS_STORE_CACHE": "none", "BAILEYS_STORE_ENCRYPTION": "aes-256-gcm"}
    return CliRunner().invoke(
        main, ["--store", f"sqlite:///{db}", "keys", "rotate", *args], env={**base, **env}
    )


def _seed_sqlite(db: Path, backend: Backend, *, tampered: bool) -> Variants:
    v = Variants(
        backend,
        durable=f"sqlite:///{db}",
        encryption="aes-256-gcm",
        master_keys={1: K1},
        cache=None,
    )

    async def run() -> None:
        async with v.open() as store:
            await seed(store, "default")
            if tampered:
                await tamper(store, SessionAddr("default", "a"))

    asyncio.run(run())
    return v


def test_cli_exits_1_when_any_record_fails(tmp_path: Path, backend_sqlite: Backend) -> None:
    db = tmp_path / "t.db"
    _seed_sqlite(db, backend_sqlite, tampered=True)
    keys = {"BAILEYS_STORE_MASTER_KEYS": f"1:{K1},2:{K2}"}
    verify = cli(db, "--verify", **keys)
    assert verify.exit_code == 1, verify.output
    assert "40 record(s) not under the active key, 0 already current, 2 failed" in verify.output
    assert "2 record(s) failed to authenticate or decode" in verify.output
    rotate = cli(db, **keys)
    assert rotate.exit_code == 1, rotate.output
    assert "40 record(s) re-encrypted, 0 already current, 2 failed" in rotate.output
    for secret in (K1, K2):
        assert secret not in verify.output + rotate.output


def test_cli_verify_on_a_clean_store(tmp_path: Path, backend_sqlite: Backend) -> None:
    db = tmp_path / "c.db"
    v = _seed_sqlite(db, backend_sqlite, tampered=False)
    result = cli(db, "--verify", BAILEYS_STORE_MASTER_KEYS=f"1:{K1},2:{K2}")
    assert result.exit_code == 0, result.output
    assert "42 record(s) not under the active key, 0 already current, 0 failed" in result.output

    async def check() -> None:
        async with v.open(master_keys={1: K1, 2: K2}) as store:
            assert await key_ids(store, SessionAddr("default", "a")) == {1}

    asyncio.run(check())


def test_migrating_a_plaintext_store_to_encryption(tmp_path: Path, backend_sqlite: Backend) -> None:
    """The documented path: encryption + allow_plaintext_reads, rotate, drop the flag."""
    db = tmp_path / "m.db"
    v = Variants(backend_sqlite, durable=f"sqlite:///{db}", cache=None)

    async def plain() -> None:
        async with v.open(encryption="none", master_keys={}) as store:
            await seed(store, "default")

    asyncio.run(plain())
    keys = {"BAILEYS_STORE_MASTER_KEYS": f"1:{K1}"}
    refused = cli(db, **keys)  # without the switch the store does not even open
    assert refused.exit_code != 0
    assert "allow_plaintext_reads" in refused.output
    migrated = cli(db, BAILEYS_STORE_ALLOW_PLAINTEXT_READS="true", **keys)
    assert migrated.exit_code == 0, migrated.output
    assert "42 record(s) re-encrypted, 0 already current, 0 failed" in migrated.output
    verified = cli(db, "--verify", **keys)  # the flag dropped: everything authenticates
    assert verified.exit_code == 0, verified.output
    assert "0 record(s) not under the active key, 42 already current, 0 failed" in verified.output

    async def read() -> None:
        async with v.open(encryption="aes-256-gcm", master_keys={1: K1}) as store:
            sess = store.session("b")
            assert await sess.load_creds() == {"registrationId": 1}
            assert await sess.keys.get("pre-key", ["7"]) == {"7": {"n": "7"}}

    asyncio.run(read())
