"""Baileys multi-file auth folders in and out of the store, and the ``sessions`` commands.

The proof against the real client: Node Baileys (installed with npm into a cache directory)
writes a folder with its own ``useMultiFileAuthState``; we import it, export it, and Node loads
both folders and compares creds and every key deep-equal. The same round trip runs in pure
Python for pyaileys' ``MultiFileAuthState`` and a Node-shaped folder, also from number-array
Buffers. All on SQLite, through the click commands where a command exists.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pyaileys.auth.creds import Contact
from pyaileys.auth.store import MultiFileAuthState
from pyaileys.util import json as pyaileys_json

from baileys_store import AuthStore, StoreConfig
from baileys_store._model import SessionAddr
from baileys_store.backends.memory import MemoryDurable
from baileys_store.backends.sqlite import SQLiteDurable
from baileys_store.cli._context import CliContext
from baileys_store.cli._folder import export_command, import_command
from baileys_store.cli._sessions import sessions_group
from baileys_store.errors import ConfigError, InvalidInputError
from baileys_store.integrations._bufferjson import Flavour
from baileys_store.integrations.baileys_folder import export_folder, import_folder
from tests.conftest import env_flag
from tests.conftest import test_master_key as make_master_key

NODE_DIR = Path(__file__).parent / "node"
NS = "clinic-1"
SENDER_KEY_ID = "5511999999999-1600000000@g.us::4444444444_1::0"  # old group id: has a '-'


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)


# -- helpers ----------------------------------------------------------------------------------


def cli(command: Any, *args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(command, list(args), **kwargs)


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def in_store(url: str, fn: Any, **config: Any) -> Any:
    """Run ``await fn(store)`` on a freshly opened store (no cache: reads hit SQLite)."""

    async def main() -> Any:
        async with AuthStore(StoreConfig(durable=url, cache=None, **config)) as store:
            return await fn(store)

    return asyncio.run(main())


def assert_same_files(a: Path, b: Path) -> int:
    """Same file names, byte-identical contents; returns the number of files."""
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return len(names)


def mangle_buffers(folder: Path, *, int_keyed: bool) -> int:
    """Rewrite every base64 Buffer as ``{"type":"Buffer","data":[n,…]}`` (or, alternately with
    ``int_keyed``, as ``{"0": n, …}``), as other stores wrote them. Returns how many."""
    count = 0

    def rewrite(value: Any) -> Any:
        nonlocal count
        if isinstance(value, dict):
            if value.get("type") == "Buffer" and isinstance(value.get("data"), str):
                count += 1
                raw = base64.b64decode(value["data"])
                if int_keyed and count % 2 and raw:
                    return {str(i): b for i, b in enumerate(raw)}
                return {"type": "Buffer", "data": list(raw)}
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    for path in folder.iterdir():
        path.write_text(json.dumps(rewrite(json.loads(path.read_text("utf-8")))), "utf-8")
    return count


# -- Node Baileys, installed once per machine ----------------------------------------------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    default = Path(base) / "baileys-store-tests" / "node"
    return Path(os.environ.get("BAILEYS_TESTS_NODE_CACHE", default))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # parallel test runs install only once
        yield


@pytest.fixture(scope="session")
def baileys_node() -> Path:
    """A directory where ``node baileys_folder.mjs`` runs with ``@whiskeysockets/baileys``.

    Installed with ``npm ci`` from the committed lock file into a cache keyed by the lock
    file's hash (first run ~5 s here, then nothing). Skipped only when npm or node is absent
    (a failure with BAILEYS_TESTS_REQUIRE_NODE=1); a failed install fails the test.
    """
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        reason = "npm/node are not installed: the proof against Node Baileys needs them"
        if env_flag("BAILEYS_TESTS_REQUIRE_NODE"):
            pytest.fail(reason)
        pytest.skip(reason)
    spec = b"".join((NODE_DIR / n).read_bytes() for n in ("package.json", "package-lock.json"))
    root = _cache_root()
    target = root / hashlib.sha256(spec).hexdigest()[:16]
    with _locked(root / ".lock"):
        if not (target / ".installed").exists():
            tmp = root / f".tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(NODE_DIR / name, tmp / name)
            start = time.perf_counter()
            proc = subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                pytest.fail(f"npm ci failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            (tmp / ".installed").write_text(f"npm ci took {time.perf_counter() - start:.1f} s\n")
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        script = target / "baileys_folder.mjs"
        if not script.exists() or script.read_bytes() != (NODE_DIR / script.name).read_bytes():
            shutil.copy2(NODE_DIR / script.name, script)
    return target


def node(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "baileys_folder.mjs", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def node_generate(baileys_node: Path, folder: Path) -> dict[str, dict[str, list[str]]]:
    manifest = folder.with_suffix(".manifest.json")
    proc = node(baileys_node, "generate", folder, manifest)
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, dict[str, list[str]]] = json.loads(manifest.read_text())
    return loaded


def node_compare(baileys_node: Path, a: Path, b: Path) -> dict[str, Any]:
    proc = node(baileys_node, "compare", a, b, a.with_suffix(".manifest.json"))
    summary: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    summary["returncode"] = proc.returncode
    summary["stderr"] = proc.stderr
    return summary


# -- the proof with Node Baileys ----------------------------------------------------------------


@pytest.fixture(scope="module")
def node_folder(baileys_node: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder Node Baileys wrote (read-only for the tests; manifest beside it)."""
    folder = tmp_path_factory.mktemp("node") / "baileys-auth"
    node_generate(baileys_node, folder)
    return folder


def test_node_baileys_folder_round_trips_through_the_store(
    baileys_node: Path, node_folder: Path, tmp_path: Path
) -> None:
    src = node_folder
    manifest = json.loads(src.with_suffix(".manifest.json").read_text())
    assert {
        "pre-key",
        "session",
        "sender-key",
        "app-state-sync-key",
        "lid-mapping",
        "device-list",
    } <= manifest.keys()
    url = store_url(tmp_path)

    result = cli(import_command, str(src), "--session", "s1", "--namespace", NS, "--store", url)
    assert result.exit_code == 0, result.output
    assert "node format" in result.stdout
    assert "creds: saved, version 1" in result.stdout

    async def stored(store: AuthStore) -> tuple[dict[str, set[str]], dict[str, Any]]:
        keys = store.session("s1", namespace=NS).keys
        found = {}
        for key_type, ids in manifest.items():
            found[key_type] = set(await keys.get(key_type, ids["present"] + ids["deleted"]))
        sender = await keys.get("sender-key", manifest["sender-key"]["present"])
        return found, sender

    # Stored under Baileys' ids ("g::u::0", "+/+/PgE="), not file names; deleted pre-key absent.
    found, sender = in_store(url, stored)
    assert found == {t: set(ids["present"]) for t, ids in manifest.items()}
    assert all(isinstance(v, bytes) for v in sender.values())  # Buffers came back as bytes

    again = cli(import_command, str(src), "--session", "s1", "--namespace", NS, "--store", url)
    assert again.exit_code == 0, again.output
    assert "creds: unchanged (already stored), version 1" in again.stdout

    out = tmp_path / "exported"
    result = cli(export_command, "s1", str(out), "--namespace", NS, "--store", url)
    assert result.exit_code == 0, result.output
    # File by file, byte for byte: Baileys' own writer is reproduced exactly.
    assert assert_same_files(src, out) == 1 + sum(len(i["present"]) for i in manifest.values())

    summary = node_compare(baileys_node, src, out)
    assert summary["returncode"] == 0, summary
    assert summary["problems"] == []
    assert summary["compared"] == 1 + sum(len(i["present"]) for i in manifest.values())


def test_number_array_buffers_come_out_as_baileys_reads_them(
    baileys_node: Path, node_folder: Path, tmp_path: Path
) -> None:
    src = node_folder
    mangled = tmp_path / "mangled-auth"
    shutil.copytree(src, mangled)
    shutil.copy2(src.with_suffix(".manifest.json"), mangled.with_suffix(".manifest.json"))
    assert mangle_buffers(mangled, int_keyed=True) > 20
    # Node Baileys itself cannot read number-array Buffers back as Buffers:
    broken = node_compare(baileys_node, src, mangled)
    assert broken["returncode"] == 1
    assert broken["problems"]

    url = store_url(tmp_path)
    result = cli(import_command, str(mangled), "--session", "s2", "--store", url)
    assert result.exit_code == 0, result.output
    out = tmp_path / "exported"
    assert cli(export_command, "s2", str(out), "--store", url).exit_code == 0
    assert_same_files(src, out)  # back in Baileys' own form, byte for byte
    summary = node_compare(baileys_node, src, out)
    assert summary["returncode"] == 0, summary


# -- pure Python: pyaileys' MultiFileAuthState and a Node-shaped folder ------------------------


async def make_pyaileys_folder(folder: Path) -> None:
    """A folder written by pyaileys' own MultiFileAuthState (fresh creds, every value shape)."""
    state = await MultiFileAuthState.load(folder)
    state.creds.me = Contact(id="1111111111:5@s.whatsapp.net", name="Clínica São José ✓")
    state.creds.registered = True
    state.creds.routing_info = os.urandom(12)
    await state.save_creds()
    await state.keys.set(
        {
            "pre-key": {
                str(i): {"public": os.urandom(32), "private": os.urandom(32)} for i in range(1, 8)
            },
            "session": {"2222222222.0": os.urandom(300), "3333333333_1.0": os.urandom(280)},
            "sender-key": {"120363025246125888@g.us::1111111111::5": os.urandom(90)},
            "sender-key-memory": {
                "5511999999999-1600000000@g.us": {"2222222222:5@s.whatsapp.net": True}
            },
            "app-state-sync-key": {"+/+/PgE=": os.urandom(70)},
            "app-state-sync-version": {
                "regular_high": {
                    "version": 7,
                    "hash": os.urandom(128),
                    "index_value_map": {"aGk=": os.urandom(32)},
                }
            },
            "identity-key": {"2222222222.0": b"\x05" + os.urandom(32)},
            "tctoken": {"3333333333@lid": {"token": os.urandom(16), "timestamp": "1700000000"}},
        }
    )


def node_json(value: Any) -> str:
    """JSON.stringify(value, BufferJSON.replacer), written independently of the code under test."""

    def buffer(obj: Any) -> Any:
        assert isinstance(obj, bytes)
        return {"type": "Buffer", "data": base64.b64encode(obj).decode()}

    return json.dumps(value, default=buffer, ensure_ascii=False, separators=(",", ":"))


def make_node_folder(folder: Path) -> None:
    """A folder in Node Baileys' shapes: camelCase creds, libsignal JSON sessions, proto JSON."""

    def pair() -> dict[str, bytes]:
        return {"private": os.urandom(32), "public": os.urandom(32)}

    creds = {
        "noiseKey": pair(),
        "pairingEphemeralKeyPair": pair(),
        "signedIdentityKey": pair(),
        "signedPreKey": {"keyPair": pair(), "signature": os.urandom(64), "keyId": 1},
        "registrationId": 1234,
        "advSecretKey": base64.b64encode(os.urandom(32)).decode(),
        "processedHistoryMessages": [],
        "nextPreKeyId": 31,
        "firstUnuploadedPreKeyId": 31,
        "accountSyncCounter": 0,
        "accountSettings": {"unarchiveChats": False},
        "registered": True,
        "me": {"id": "1111111111:5@s.whatsapp.net", "name": "Zoë ✓ \u2028"},
        "account": {"details": "AQID", "accountSignatureKey": "BAUG"},
        "signalIdentities": [
            {
                "identifier": {"name": "1111111111:5@s.whatsapp.net", "deviceId": 0},
                "identifierKey": b"\x05" + os.urandom(32),
            }
        ],
        "routingInfo": os.urandom(9),
    }
    keys: dict[str, dict[str, Any]] = {
        "pre-key": {str(i): pair() for i in range(1, 31)},
        "session": {
            "2222222222.0": {
                "_sessions": {"BQ==": {"registrationId": 7, "rootKey": "AA=="}},
                "version": "v1",
            }
        },
        "sender-key": {SENDER_KEY_ID: os.urandom(100)},
        "app-state-sync-key": {"+/+/PgE=": {"keyData": "AAEC", "timestamp": "1700000000123"}},
        "lid-mapping": {"2222222222": "3333333333", "3333333333_reverse": "2222222222"},
        "device-list": {"2222222222": ["0", "5"]},
        "tctoken": {"__index": {"token": b'["3333333333@lid"]'}},
    }
    folder.mkdir()
    (folder / "creds.json").write_text(node_json(creds), "utf-8")
    for key_type, items in keys.items():
        for key_id, value in items.items():
            name = f"{key_type}-{key_id}.json".replace("/", "__").replace(":", "-")
            (folder / name).write_text(node_json(value), "utf-8")


async def _round_trip(src: Path, out: Path, url: str, flavour: Flavour | None) -> dict[str, int]:
    async with AuthStore(StoreConfig(durable=url)) as store:
        report = await import_folder(store, src, "s1", namespace=NS, flavour=flavour)
        assert report.creds_saved
        again = await import_folder(store, src, "s1", namespace=NS)
        assert (again.counts, again.creds_saved, again.creds_version) == (report.counts, False, 1)
        exported = await export_folder(store, "s1", out, namespace=NS)
        assert exported.counts == report.counts
        assert exported.flavour == report.flavour
        return report.counts


@pytest.mark.parametrize("mangled", [False, True], ids=["base64", "number-arrays"])
def test_pyaileys_folder_round_trip(tmp_path: Path, mangled: bool) -> None:
    src, out = tmp_path / "pyaileys-auth", tmp_path / "exported"
    asyncio.run(make_pyaileys_folder(src))
    original = tmp_path / "original"
    shutil.copytree(src, original)
    if mangled:
        assert mangle_buffers(src, int_keyed=False) > 20
        # pyaileys' own reader leaves these as dicts (the bug import fixes):
        mangled_session = (src / "session-2222222222.0.json").read_text()
        assert isinstance(pyaileys_json.loads(mangled_session), dict)
    counts = asyncio.run(_round_trip(src, out, store_url(tmp_path), "pyaileys"))
    assert counts == {
        "pre-key": 7,
        "session": 2,
        "sender-key": 1,
        "sender-key-memory": 1,
        "app-state-sync-key": 1,
        "app-state-sync-version": 1,
        "identity-key": 1,
        "tctoken": 1,
    }
    assert_same_files(original, out)

    async def load_both() -> None:
        a, b = await MultiFileAuthState.load(original), await MultiFileAuthState.load(out)
        assert a.creds == b.creds
        for key_type, ids in {
            "pre-key": [str(i) for i in range(1, 8)],
            "session": ["2222222222.0", "3333333333_1.0"],
            "sender-key": ["120363025246125888@g.us::1111111111::5"],
            "app-state-sync-key": ["+/+/PgE="],
            "identity-key": ["2222222222.0"],
            "tctoken": ["3333333333@lid"],
        }.items():
            left, right = await a.keys.get(key_type, ids), await b.keys.get(key_type, ids)
            assert None not in left.values()
            assert left == right, key_type
        sessions = await b.keys.get("session", ["2222222222.0"])
        assert isinstance(sessions["2222222222.0"], bytes)  # what pyaileys' Signal stack needs

    asyncio.run(load_both())


@pytest.mark.parametrize("mangled", [False, True], ids=["base64", "number-arrays"])
def test_node_shaped_folder_round_trip(tmp_path: Path, mangled: bool) -> None:
    src, out = tmp_path / "node-auth", tmp_path / "exported"
    make_node_folder(src)
    original = tmp_path / "original"
    shutil.copytree(src, original)
    if mangled:
        assert mangle_buffers(src, int_keyed=True) > 60
    counts = asyncio.run(_round_trip(src, out, store_url(tmp_path), None))
    assert counts == {
        "pre-key": 30,
        "session": 1,
        "sender-key": 1,
        "app-state-sync-key": 1,
        "lid-mapping": 2,
        "device-list": 1,
        "tctoken": 1,
    }
    assert_same_files(original, out)

    async def values(store: AuthStore) -> dict[str, Any]:
        keys = store.session("s1", namespace=NS).keys
        return {
            "sender": await keys.get("sender-key", [SENDER_KEY_ID]),
            "pre": await keys.get("pre-key", ["1"]),
            "app": await keys.get("app-state-sync-key", ["+/+/PgE="]),
            "creds": await store.session("s1", namespace=NS).load_creds(),
        }

    got = in_store(store_url(tmp_path), values)
    assert isinstance(next(iter(got["sender"].values())), bytes)
    assert set(got["pre"]["1"]) == {"private", "public"}
    assert isinstance(got["pre"]["1"]["public"], bytes)
    assert got["app"]["+/+/PgE="] == {"keyData": "AAEC", "timestamp": "1700000000123"}  # JSON form
    assert isinstance(got["creds"]["signalIdentities"][0]["identifierKey"], bytes)


# -- import and export commands: refusals, resumption, options ------------------------------------


@pytest.fixture
def py_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pyaileys-auth"
    asyncio.run(make_pyaileys_folder(folder))
    return folder


def creds_version(url: str, session: str = "s1", namespace: str = NS) -> int:
    async def fn(store: AuthStore) -> int:
        return await store.session(session, namespace=namespace).creds_version()

    version: int = in_store(url, fn)
    return version


def key_count(url: str, session: str = "s1", namespace: str = NS) -> dict[str, int]:
    async def fn(store: AuthStore) -> dict[str, int]:
        durable = store.durable
        assert isinstance(durable, SQLiteDurable)
        return await durable.count_keys(SessionAddr(namespace, session))

    counts: dict[str, int] = in_store(url, fn)
    return counts


def test_unknown_key_files_are_reported_not_guessed(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    (py_folder / "future-type-abc.json").write_text('{"x": 1}')
    (py_folder / "notes.txt").write_text("not a key file")  # not *.json: ignored
    args = (str(py_folder), "--session", "s1", "--namespace", NS, "--store", url)

    result = cli(import_command, *args)
    assert result.exit_code == 1
    assert "future-type-abc.json" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one clear line
    assert key_count(url) == {}  # nothing imported
    assert creds_version(url) == 0

    result = cli(import_command, *args, "--skip-unknown")
    assert result.exit_code == 0, result.output
    assert "1 file(s) skipped (unknown type): future-type-abc.json" in result.stderr
    assert "future-type" not in key_count(url)

    result = cli(import_command, *args, "--key-type", "future-type")
    assert result.exit_code == 0, result.output

    async def future(store: AuthStore) -> dict[str, Any]:
        return await store.session("s1", namespace=NS).keys.get("future-type", ["abc"])

    assert in_store(url, future) == {"abc": {"x": 1}}


def test_import_over_other_creds_needs_replace(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    other = tmp_path / "other-auth"
    make_node_folder(other)
    assert (
        cli(
            import_command, str(py_folder), "--session", "s1", "--namespace", NS, "--store", url
        ).exit_code
        == 0
    )
    args = (str(other), "--session", "s1", "--namespace", NS, "--store", url)

    result = cli(import_command, *args)
    assert result.exit_code == 1
    assert "already holds different creds" in result.output
    assert key_count(url)["session"] == 2  # untouched
    assert creds_version(url) == 1

    result = cli(import_command, *args, "--replace")
    assert result.exit_code == 0, result.output
    assert key_count(url) == {
        "pre-key": 30,
        "session": 1,
        "sender-key": 1,
        "app-state-sync-key": 1,
        "lid-mapping": 2,
        "device-list": 1,
        "tctoken": 1,
    }  # the old session's keys are gone
    assert creds_version(url) == 2


def test_interrupted_import_leaves_no_creds_and_resumes(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    bad = py_folder / "session-3333333333_1.0.json"
    good = bad.read_bytes()
    bad.write_text('{"type": "Buffer", "data": [1, 2, 999]}')
    args = (str(py_folder), "--session", "s1", "--namespace", NS, "--store", url)

    result = cli(import_command, *args, "--batch-size", "4")
    assert result.exit_code == 1
    assert "session-3333333333_1.0.json" in result.output
    assert "0..255" in result.output
    written = key_count(url)
    assert 0 < sum(written.values()) < 15  # the batches before the bad file, atomically
    assert sum(written.values()) % 4 == 0
    assert creds_version(url) == 0  # creds only after every key: no half session to start from

    bad.write_bytes(good)
    result = cli(import_command, *args, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert sum(key_count(url).values()) == 15
    assert creds_version(url) == 1


def test_export_refusals(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    assert (
        cli(
            import_command, str(py_folder), "--session", "s1", "--namespace", NS, "--store", url
        ).exit_code
        == 0
    )
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    for args, message in [
        (("s1", str(full)), "is not empty"),
        (("nobody", str(tmp_path / "a")), "has no creds to export"),
        (("s1", str(tmp_path / "b"), "--flavour", "node"), "converting between flavours"),
        (("bad id!", str(tmp_path / "c")), "invalid session id"),
    ]:
        result = cli(export_command, *args, "--namespace", NS, "--store", url)
        assert result.exit_code == 1, args
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_export_overwrite_mirrors_the_session(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    assert (
        cli(
            import_command, str(py_folder), "--session", "s1", "--namespace", NS, "--store", url
        ).exit_code
        == 0
    )
    (py_folder / "pre-key-99.json").write_text("{}")  # stale: not in the session
    (py_folder / "creds.json").write_text("{}")  # replaced
    result = cli(
        export_command, "s1", str(py_folder), "--namespace", NS, "--store", url, "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert "Removed 1 stale file(s)" in result.stdout
    assert not (py_folder / "pre-key-99.json").exists()
    assert json.loads((py_folder / "creds.json").read_text())["registered"] is True
    assert not [p for p in py_folder.iterdir() if p.name.endswith(".tmp")]


def test_export_refuses_ids_sharing_a_file_name(tmp_path: Path) -> None:
    url = store_url(tmp_path)
    src = tmp_path / "auth"
    make_node_folder(src)

    async def fn(store: AuthStore) -> None:
        await import_folder(store, src, "s1", namespace=NS)
        # ':' and '-' both become '-' in file names: Baileys would read one file for both ids
        await store.session("s1", namespace=NS).keys.set(
            {"tctoken": {"1:2@lid": {"token": b"a"}, "1-2@lid": {"token": b"b"}}}
        )
        with pytest.raises(InvalidInputError, match=r"share the file tctoken-1-2@lid\.json"):
            await export_folder(store, "s1", tmp_path / "out", namespace=NS)
        assert not (tmp_path / "out").exists()  # refused before writing anything

    in_store(url, fn)


class _NoListing:
    """A durable tier that cannot enumerate keys (delegates everything else to memory)."""

    name = "nolist"

    def __init__(self) -> None:
        self._inner = MemoryDurable()

    def __getattr__(self, attr: str) -> Any:
        if attr in ("iter_key_ids", "count_keys"):
            raise AttributeError(attr)
        return getattr(self._inner, attr)


def test_a_backend_that_cannot_list_keys_is_refused_at_construction(tmp_path: Path) -> None:
    """Key listing is part of the durable contract: a backend without it is refused up front,
    not when an export (or a rotation) first needs it."""
    src = tmp_path / "auth"
    make_node_folder(src)

    async def main() -> None:
        # The memory backend lists keys: export works there.
        async with AuthStore(StoreConfig(durable="memory://")) as store:
            await import_folder(store, src, "s1")
            await export_folder(store, "s1", tmp_path / "out-memory")
        assert (tmp_path / "out-memory" / "creds.json").exists()

    asyncio.run(main())
    nolist: Any = _NoListing()
    with pytest.raises(ConfigError, match=r"does not implement baileys_store\.contracts\.Durable"):
        AuthStore(StoreConfig(durable="memory://"), durable=nolist)


def test_encrypted_store_from_environment(py_folder: Path, tmp_path: Path) -> None:
    url = store_url(tmp_path)
    key = make_master_key()
    env = {
        "BAILEYS_STORE_DURABLE": url,
        "BAILEYS_STORE_ENCRYPTION": "aes-256-gcm",
        "BAILEYS_STORE_MASTER_KEYS": f"1:{key}",
    }
    assert cli(import_command, str(py_folder), "--session", "s1", env=env).exit_code == 0
    out = tmp_path / "out"
    assert cli(export_command, "s1", str(out), env=env).exit_code == 0
    assert_same_files(py_folder, out)
    # Without the key the store refuses to read, in one line (never "no creds").
    result = cli(export_command, "s1", str(tmp_path / "out2"), "--store", url)
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "no creds" not in result.output
    assert key not in result.output


# -- sessions list | inspect | delete --------------------------------------------------------------


@pytest.fixture
def two_sessions(py_folder: Path, tmp_path: Path) -> str:
    """A store with s1 (pyaileys) in NS and s2 (node) in namespace other."""
    url = store_url(tmp_path)
    node_folder = tmp_path / "node-auth"
    make_node_folder(node_folder)
    assert (
        cli(
            import_command, str(py_folder), "--session", "s1", "--namespace", NS, "--store", url
        ).exit_code
        == 0
    )
    assert (
        cli(
            import_command,
            str(node_folder),
            "--session",
            "s2",
            "--namespace",
            "other",
            "--store",
            url,
        ).exit_code
        == 0
    )
    return url


def table_rows(output: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_sessions_list(two_sessions: str, tmp_path: Path) -> None:
    result = cli(sessions_group, "list", "--store", two_sessions)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert [r[:3] for r in rows] == [[NS, "s1", "1"], ["other", "s2", "1"]]
    assert all(r[3].endswith("UTC") for r in rows)
    assert "2 session(s)" in result.stdout

    result = cli(sessions_group, "list", "--namespace", "other", "--store", two_sessions)
    assert [r[:2] for r in table_rows(result.stdout)] == [["other", "s2"]]

    # A store with no session lists none; a missing file is an error (a read creates nothing).
    in_store(f"sqlite:///{tmp_path / 'empty.db'}", lambda store: store.check())
    empty = cli(sessions_group, "list", "--store", f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.exit_code == 0
    assert "No sessions." in empty.stdout
    missing = cli(sessions_group, "list", "--store", f"sqlite:///{tmp_path / 'missing.db'}")
    assert missing.exit_code == 1
    assert "no SQLite database at" in missing.output
    assert not list(tmp_path.glob("missing.db*"))


def test_sessions_inspect(two_sessions: str) -> None:
    result = cli(sessions_group, "inspect", "s2", "--namespace", "other", "--store", two_sessions)
    assert result.exit_code == 0, result.output
    rows = dict((r[0], r[1]) for r in table_rows(result.stdout))
    assert rows["creds version"] == "1"
    assert rows["creds flavour"] == "node (camelCase)"
    assert rows["registered"] == "True"
    assert rows["account"] == "1111111111:5@s.whatsapp.net"
    assert rows["pre-key"] == "30"
    assert rows["lid-mapping"] == "2"
    assert rows["total"] == "37"

    result = cli(sessions_group, "inspect", "s1", "--namespace", NS, "--store", two_sessions)
    rows = dict((r[0], r[1]) for r in table_rows(result.stdout))
    assert rows["creds flavour"] == "pyaileys (snake_case)"
    assert rows["session"] == "2"

    missing = cli(sessions_group, "inspect", "s9", "--namespace", NS, "--store", two_sessions)
    assert missing.exit_code == 1
    assert "no session clinic-1/s9" in missing.output


def test_sessions_delete_asks_first(two_sessions: str) -> None:
    args = ("delete", "s1", "--namespace", NS, "--store", two_sessions)
    for stdin in (None, "", "n\n"):  # no stdin, closed stdin, "no"
        result = cli(sessions_group, *args, input=stdin)
        assert result.exit_code == 1, stdin
        assert "not deleted" in result.output
        assert creds_version(two_sessions) == 1

    result = cli(sessions_group, *args, input="y\n")
    assert result.exit_code == 0, result.output
    assert "Deleted session clinic-1/s1." in result.output
    assert creds_version(two_sessions) == 0
    assert key_count(two_sessions) == {}

    again = cli(sessions_group, *args, "--yes")
    assert again.exit_code == 1
    assert "no session clinic-1/s1" in again.output

    yes = cli(
        sessions_group, "delete", "s2", "--namespace", "other", "--yes", "--store", two_sessions
    )
    assert yes.exit_code == 0, yes.output
    assert creds_version(two_sessions, "s2", "other") == 0


def test_sessions_delete_without_a_terminal_refuses_instead_of_hanging(two_sessions: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAILEYS_STORE_")}
    code = "from baileys_store.cli._sessions import sessions_group; sessions_group()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "delete", "s1", "--namespace", NS, "--store", two_sessions],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert "not deleted: no confirmation (pass --yes)" in proc.stderr
    assert creds_version(two_sessions) == 1


def test_store_comes_from_option_group_or_environment(two_sessions: str, tmp_path: Path) -> None:
    # --store of the command, else the group's --store (CliContext), else BAILEYS_STORE_DURABLE
    via_group = cli(sessions_group, "list", obj=CliContext(two_sessions))
    via_env = cli(sessions_group, "list", env={"BAILEYS_STORE_DURABLE": two_sessions})
    assert "2 session(s)" in via_group.stdout
    assert "2 session(s)" in via_env.stdout
    other = f"sqlite:///{tmp_path / 'other.db'}"
    in_store(other, lambda store: store.check())  # an empty store (listing creates none)
    wins = cli(sessions_group, "list", "--store", other, obj=CliContext(two_sessions))
    assert "No sessions." in wins.stdout

    for args in (
        ("list", "--store", "foo://x"),
        ("inspect", "bad id!", "--store", other),
        ("delete", "s1", "--namespace", "bad ns!", "--yes", "--store", other),
    ):
        result = cli(sessions_group, *args)
        assert result.exit_code == 1, args
        assert result.output.startswith("Error: ")
        assert len(result.output.strip().splitlines()) == 1, result.output
