"""Files the store creates are private, a typo in a path fails, and bad paths fail fast.

An attacker here is any other local user: with umask 022 the SQLite database, its ``-wal``,
``-shm`` and ``.lock`` files and exported auth folders used to be 0644/0755, private keys
readable by everyone. And an operator's typo: a read-only command on a missing file, or a
store opened under a missing folder, used to create an empty store (and so a new pairing).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store.cli import main
from baileys_store.integrations.baileys_folder import export_folder
from tests.conftest import test_master_key as make_master_key
from tests.creds_data import node_creds


@pytest.fixture(autouse=True)
def _umask_022(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The common default umask, which leaves new files world-readable."""
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def open_store(url: str, **config: Any) -> None:
    """Open the store, write a key and creds (so the WAL exists), close."""

    async def run() -> None:
        async with AuthStore(StoreConfig(durable=url, **config)) as store:
            session = store.session("s1")
            await session.keys.set({"pre-key": {"1": {"public": b"p" * 32, "private": b"k" * 32}}})
            await session.save_creds(node_creds())

    asyncio.run(run())


# -- modes ------------------------------------------------------------------------------------


def test_store_files_are_0600_under_umask_022(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    seen: dict[str, int] = {}

    async def run() -> None:
        # The in-process cache makes the lock exclusive; the WAL and -shm exist while open.
        async with AuthStore(StoreConfig(durable=f"sqlite:///{db}", cache="memory://")) as store:
            await store.session("s1").save_creds(node_creds())
            seen.update((name, mode(tmp_path / name)) for name in os.listdir(tmp_path))

    asyncio.run(run())
    assert seen == {
        name: 0o600 for name in ("store.db", "store.db-wal", "store.db-shm", "store.db.lock")
    }


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    open_store(f"sqlite:///{db}")
    os.chmod(db, 0o640)  # the operator's choice (a group that backs it up)
    open_store(f"sqlite:///{db}")
    assert mode(db) == 0o640


def test_missing_folder_is_a_config_error_and_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'store.db'}"
    with pytest.raises(errors.ConfigError, match="does not exist"):
        open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_create_dirs_makes_each_missing_folder_0700(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "store.db"
    open_store(f"sqlite:///{db}", create_dirs=True)
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b"), mode(db)) == (0o700, 0o700, 0o600)


def test_exported_folder_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url)
    target = tmp_path / "out" / "auth"

    async def run() -> None:
        async with AuthStore(StoreConfig(durable=url)) as store:
            await export_folder(store, "s1", target)

    asyncio.run(run())
    files = sorted(p.name for p in target.iterdir())
    assert "creds.json" in files
    assert len(files) >= 2, files
    assert mode(tmp_path / "out") == mode(target) == 0o700
    assert {name: mode(target / name) for name in files} == dict.fromkeys(files, 0o600)


def test_export_into_an_existing_folder_keeps_the_folder_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url)
    target = tmp_path / "mine"
    target.mkdir(mode=0o750)
    result = CliRunner().invoke(main, ["--store", url, "export", "s1", str(target)])
    assert result.exit_code == 0, result.output
    assert mode(target) == 0o750
    assert mode(target / "creds.json") == 0o600


# -- read-only commands create nothing --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "list"],
        ["sessions", "inspect", "s1"],
        ["sessions", "delete", "s1", "--yes"],
        ["sessions", "touch", "s1"],
        ["export", "s1", "OUT"],
        ["purge", "--older-than", "1d", "--yes"],
        ["purge", "--older-than", "1d", "--dry-run"],
    ],
)
def test_commands_on_a_missing_file_fail_and_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    result = CliRunner().invoke(main, ["--store", url, *args])
    assert result.exit_code != 0
    assert "no SQLite database at" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, no traceback
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_is_not_created_by_a_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["sessions", "list"])
    assert result.exit_code != 0
    assert "baileys-store.db" in result.output
    assert list(tmp_path.iterdir()) == []


def test_import_still_creates_its_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url)
    folder = tmp_path / "auth"
    assert CliRunner().invoke(main, ["--store", url, "export", "s1", str(folder)]).exit_code == 0
    fresh = tmp_path / "fresh.db"
    result = CliRunner().invoke(
        main, ["--store", f"sqlite:///{fresh}", "import", str(folder), "--session", "s1"]
    )
    assert result.exit_code == 0, result.output
    assert mode(fresh) == 0o600


# -- unopenable paths -------------------------------------------------------------------------


def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_bytes(b"x")
    (tmp_path / "notadb.db").write_bytes(os.urandom(4096))
    return {
        "proc": Path("/proc/x.db"),
        "sys": Path("/sys/x.db"),
        "directory": tmp_path / "adir",
        "device": Path("/dev/null"),
        "under a file": tmp_path / "afile" / "x.db",
        "not a database": tmp_path / "notadb.db",
        "name too long": tmp_path / ("x" * 300 + ".db"),
    }


@pytest.mark.parametrize(
    "which",
    ["proc", "sys", "directory", "device", "under a file", "not a database", "name too long"],
)
def test_unopenable_paths_raise_config_error_fast(tmp_path: Path, which: str) -> None:
    path = _bad_paths(tmp_path)[which]
    key = make_master_key()
    config = StoreConfig(
        durable=f"sqlite:///{path}",
        encryption="aes-256-gcm",
        master_keys={1: key},
        create_dirs=True,
    )
    before = set(os.listdir("/dev"))

    async def run() -> None:
        async with AuthStore(config):
            pass

    start = time.monotonic()
    with pytest.raises(errors.StoreError) as info:
        asyncio.run(run())
    elapsed = time.monotonic() - start
    assert isinstance(info.value, errors.ConfigError), repr(info.value)
    assert elapsed < 1.0, elapsed
    assert key not in str(info.value)
    assert set(os.listdir("/dev")) == before  # no /dev/null.lock beside the device


def test_read_only_folder_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    # Root ignores permission bits; the immutable attribute (ext4, xfs, btrfs) binds it too.
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(folder)], check=False).returncode:
        pytest.skip("running as root on a file system without chattr +i")
    try:
        with pytest.raises(errors.ConfigError):
            open_store(f"sqlite:///{folder / 'store.db'}")
        assert os.listdir(folder) == []
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o700)
