"""Blocking file work of folder import/export (run in a thread by the async callers).

An export holds private keys: the folders it creates are 0700 and every file it writes 0600,
whatever the umask (created with that mode by ``os.open``/``os.mkdir``, never chmod-ed after).
A folder that exists keeps its mode.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from ..backends.sqlite import FILE_MODE, make_private_dirs
from ..errors import InvalidInputError
from ._bufferjson import Flavour, loads
from ._folder_names import CREDS_FILE, KeyNameParser


def parse(name: str, raw: bytes, flavour: Flavour) -> Any:
    """Parse one file's bytes; errors name the file (never its content)."""
    try:
        return loads(raw, flavour)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None


def read_files(folder: Path, names: list[str], flavour: Flavour) -> list[Any]:
    """Parsed contents of ``names`` in ``folder``."""
    return [parse(n, (folder / n).read_bytes(), flavour) for n in names]


def scan(folder: Path, parser: KeyNameParser) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """``{file name: (type, id)}`` of the key files, and the ``*.json`` names nothing explains.

    Raises:
        InvalidInputError: two files decode to the same key.
    """
    keys: dict[str, tuple[str, str]] = {}
    unknown: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name == CREDS_FILE or not entry.name.endswith(".json") or not entry.is_file():
            continue
        parsed = parser.parse(entry.name)
        if parsed is None:
            unknown.append(entry.name)
        elif parsed in seen:
            raise InvalidInputError(f"{seen[parsed]} and {entry.name} name the same key")
        else:
            seen[parsed] = entry.name
            keys[entry.name] = parsed
    return keys, unknown


def prepare_target(folder: Path, *, overwrite: bool) -> None:
    """Create the export folder, refusing a non-empty one unless ``overwrite``.

    With ``overwrite`` an old ``creds.json`` goes first: until the new one is written last,
    the folder must not look like a complete auth state.
    """
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise InvalidInputError(f"{folder} is not empty (overwrite/--overwrite replaces it)")
        (folder / CREDS_FILE).unlink(missing_ok=True)
    make_private_dirs(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` so it is either the old file or the whole new one, even after a crash."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(tmp, flags, FILE_MODE), "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files(files: list[tuple[Path, str]]) -> None:
    """:func:`write_atomic` each ``(path, text)``."""
    for path, text in files:
        write_atomic(path, text)


def finish_export(folder: Path, written: set[str], *, overwrite: bool) -> list[str]:
    """Delete stale ``*.json`` files (with ``overwrite``), then fsync the folder itself.

    Returns:
        The names removed.
    """
    removed: list[str] = []
    if overwrite:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = entry.name
            if name.endswith(".json") and name != CREDS_FILE and name not in written:
                os.unlink(entry.path)
                removed.append(name)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames themselves must survive a power loss
    finally:
        os.close(fd)
    return removed
