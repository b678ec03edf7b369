"""``baileys-store import ROOT --tree TEMPLATE``: a tree of Baileys folders, one session each."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from baileys_store import AuthStore, StoreConfig
from baileys_store.cli._folder import import_command
from baileys_store.errors import InvalidInputError
from baileys_store.integrations._tree import TreeTemplate
from tests.integration.test_baileys_folder import make_node_folder

KEYS_PER_FOLDER = 37  # what make_node_folder writes


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BAILEYS_STORE_"):
            monkeypatch.delenv(name)


def run(*args: str) -> Result:
    return CliRunner().invoke(import_command, list(args))


def folder(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    make_node_folder(path)
    return path


def listed(url: str) -> dict[str, int]:
    """``{"namespace/session": keys}`` of every session of the store."""

    async def main() -> dict[str, int]:
        async with AuthStore(StoreConfig(durable=url, cache=None)) as store:
            found = {}
            async for info in store.list_sessions():
                counts = await store.session(info.session_id, namespace=info.namespace).key_counts()
                found[f"{info.namespace}/{info.session_id}"] = sum(counts.values())
            return found

    return asyncio.run(main())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """auth_data/clinic_1/{channel_3,channel_4}, auth_data/clinic_2/channel_1, plus strays."""
    root = tmp_path / "auth_data"
    for relative in ("clinic_1/channel_3", "clinic_1/channel_4", "clinic_2/channel_1"):
        folder(root, relative)
    (root / "clinic_1" / "no_creds_here").mkdir()  # not a Baileys folder: ignored
    (root / "clinic_2" / "notes.txt").write_text("hello")
    return root


def test_tree_imports_every_folder_and_reports_each_failure(tree: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    folder(tree, "bad name/channel_1")  # not a valid namespace
    folder(tree, "stray")  # one part where the template has two
    broken = tree / "clinic_2" / "broken"
    broken.mkdir()
    (broken / "creds.json").write_text("{not json")

    result = run(str(tree), "--tree", "{namespace}/{session}", "--store", url)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"clinic_1/channel_3: {KEYS_PER_FOLDER} key(s) (node), creds saved, version 1",
        f"clinic_1/channel_4: {KEYS_PER_FOLDER} key(s) (node), creds saved, version 1",
        f"clinic_2/channel_1: {KEYS_PER_FOLDER} key(s) (node), creds saved, version 1",
    ]
    assert lines[-1] == "3 session(s) imported, 3 folder(s) failed."
    errors = result.stderr
    assert "FAILED bad name/channel_1: invalid namespace 'bad name'" in errors
    assert "FAILED stray: 1 path part(s) below the root, the template" in errors
    assert "FAILED clinic_2/broken: " in errors
    assert listed(url) == {
        "clinic_1/channel_3": KEYS_PER_FOLDER,
        "clinic_1/channel_4": KEYS_PER_FOLDER,
        "clinic_2/channel_1": KEYS_PER_FOLDER,
    }

    # Idempotent: the same sessions, nothing saved again; once the strays go, exit 0.
    again = run(str(tree), "--tree", "{namespace}/{session}", "--store", url)
    assert again.exit_code == 1
    assert "clinic_1/channel_3: 37 key(s) (node), creds unchanged, version 1" in again.stdout
    for stray in ("bad name", "stray", "clinic_2/broken"):
        for path in sorted((tree / stray).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (tree / stray).rmdir()
    clean = run(str(tree), "--tree", "{namespace}/{session}", "--store", url)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.splitlines()[-1] == "3 session(s) imported, 0 folder(s) failed."
    assert len(listed(url)) == 3


def test_other_creds_already_stored_fail_that_folder_unless_replace(
    tree: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run(str(tree), "--tree", "{namespace}/{session}", "--store", url).exit_code == 0
    replaced = tree / "clinic_1" / "channel_4"
    for path in replaced.iterdir():
        path.unlink()
    replaced.rmdir()
    make_node_folder(replaced)  # new creds for a session the store holds

    result = run(str(tree), "--tree", "{namespace}/{session}", "--store", url)
    assert result.exit_code == 1
    assert "FAILED clinic_1/channel_4: session clinic_1/channel_4 already holds different" in (
        result.stderr
    )
    assert "clinic_2/channel_1: 37 key(s) (node), creds unchanged" in result.stdout
    result = run(str(tree), "--tree", "{namespace}/{session}", "--replace", "--store", url)
    assert result.exit_code == 0, result.output
    assert "clinic_1/channel_4: 37 key(s) (node), creds saved, version 2" in result.stdout


def test_session_template_takes_the_namespace_option(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    root = tmp_path / "sessions"
    folder(root, "wa-5511")
    folder(root, "wa-5522")
    folder(root, "other")  # no "wa-" prefix: does not match
    result = run(str(root), "--tree", "wa-{session}", "--namespace", "tenant", "--store", url)
    assert result.exit_code == 1
    assert "FAILED other: 'other' does not match the template 'wa-{session}'" in result.stderr
    assert set(listed(url)) == {"tenant/5511", "tenant/5522"}
    result = run(str(root / "wa-5511" / ".."), "--tree", "{session}", "--store", url)
    assert "default/wa-5511: 37 key(s)" in result.stdout  # no --namespace: "default"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tree", "{namespace}/{sesion}"], "unknown placeholder {sesion}"),
        (["--tree", "clinics/all"], "has no {session} placeholder"),
        (["--tree", "{session}/{session}"], "{session} twice"),
        (["--tree", "{session"], "unbalanced brace"),
        (["--tree", "{namespace}/{session}", "--namespace", "x"], "conflict"),
        (["--tree", "{session}", "--session", "s"], "exclude each other"),
        ([], "give --session (or --tree"),
    ],
)
def test_bad_template_or_options_are_usage_errors(
    tree: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = run(str(tree), *args, "--store", url)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "store.db").exists()  # nothing opened, nothing created


def test_a_root_without_folders_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run(
        str(tmp_path / "empty"), "--tree", "{session}", "--store", f"sqlite:///{tmp_path / 's.db'}"
    )
    assert result.exit_code == 1
    assert "no Baileys auth folder (creds.json) below" in result.output


def test_template_names() -> None:
    template = TreeTemplate("{namespace}/{session}")
    assert template.names(Path("clinic_1/channel_3"), "ignored") == ("clinic_1", "channel_3")
    assert TreeTemplate("/t-{namespace}/x/{session}.d/").names(Path("t-a/x/b.d"), "n") == ("a", "b")
    with pytest.raises(InvalidInputError, match="invalid session id"):
        TreeTemplate("{session}").names(Path("has{brace"), "n")
    with pytest.raises(InvalidInputError, match="empty"):
        TreeTemplate("a/../{session}")
