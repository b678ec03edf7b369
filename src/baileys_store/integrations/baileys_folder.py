"""Import and export Baileys multi-file auth folders (``useMultiFileAuthState``).

A folder holds ``creds.json`` and one ``{type}-{id}.json`` per key, in Baileys' ``BufferJSON``.
Two flavours are understood, told apart by the creds' field names:

* ``node``: Node Baileys (camelCase creds), also what waeys and most Node tools write;
* ``pyaileys``: pyaileys' ``MultiFileAuthState`` (snake_case creds, sorted keys).

How values map: a value is stored exactly as its file parses, with every Buffer revived as
``bytes`` (also the ``{"type": "Buffer", "data": [n, ...]}`` form other stores wrote, and, for
``node``, Baileys' ``{"0": n, ...}`` objects). Nothing else is translated: protobuf values
(creds ``account``, ``app-state-sync-key``) stay in their JSON form (base64 strings, int64 as
decimal strings), libsignal sessions stay JSON objects, pyaileys' stay ``bytes``. So export
writes the same JSON its flavour's client wrote (byte for byte for files that client wrote
itself), and a flavour is never converted into the other.

Usage::

    async with open_store(url) as store:
        report = await import_folder(store, "auth_info_baileys", "clinic-42")
        await export_folder(store, "clinic-42", "restored")
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._store import AuthStore
from ..errors import ConflictError, InvalidInputError
from . import _folder_io as fio
from ._bufferjson import FLAVOURS, Flavour, dumps
from ._folder_names import CREDS_FILE, KNOWN_KEY_TYPES, KeyNameParser, key_filename

__all__ = [
    "FLAVOURS",
    "KNOWN_KEY_TYPES",
    "ExportReport",
    "Flavour",
    "ImportReport",
    "Progress",
    "detect_flavour",
    "export_folder",
    "import_folder",
]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of files."""

_MARKERS: dict[Flavour, tuple[str, ...]] = {
    "node": ("noiseKey", "signedIdentityKey", "signedPreKey", "registrationId", "advSecretKey"),
    "pyaileys": ("noise_key", "signed_identity_key", "signed_pre_key", "registration_id"),
}
_BATCH = 500


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_folder` did.

    Attributes:
        flavour: ``node`` or ``pyaileys``.
        counts: Keys imported per type.
        creds_version: Version of the session's creds after the import.
        creds_saved: ``False`` when the store already held these exact creds (a re-import).
        skipped: Key files left out with ``skip_unknown`` (no known type explains the name).
        empty: Key files holding JSON ``null`` (Baileys reads them as absent): not imported.
    """

    flavour: Flavour
    counts: dict[str, int]
    creds_version: int
    creds_saved: bool
    skipped: tuple[str, ...] = ()
    empty: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What :func:`export_folder` wrote: ``counts`` per key type, stale files ``removed``."""

    flavour: Flavour
    counts: dict[str, int]
    removed: tuple[str, ...] = ()


def detect_flavour(creds: Mapping[str, Any]) -> Flavour:
    """``node`` for camelCase creds, ``pyaileys`` for snake_case ones.

    Raises:
        InvalidInputError: neither or both naming styles are present.
    """
    found = [f for f in FLAVOURS if any(m in creds for m in _MARKERS[f])]
    if len(found) != 1:
        what = "mixes camelCase and snake_case fields" if found else "has no known creds fields"
        raise InvalidInputError(f"creds {what}: cannot tell Node Baileys from pyaileys creds")
    return found[0]


def _pick_flavour(creds: Mapping[str, Any], wanted: Flavour | None, where: str) -> Flavour:
    found = detect_flavour(creds)
    if wanted is not None and wanted != found:
        raise InvalidInputError(
            f"{where} holds {found} creds, not {wanted}; converting between flavours is not "
            "supported (their key values differ too)"
        )
    return found


def _load_folder(
    path: Path, flavour: Flavour | None, extra_types: Iterable[str]
) -> tuple[Flavour, dict[str, Any], dict[str, tuple[str, str]], list[str]]:
    """Flavour, creds, key files and unexplained files of a folder (blocking)."""
    if not (path / CREDS_FILE).is_file():
        raise InvalidInputError(f"{path} has no {CREDS_FILE}: not a Baileys auth folder")
    raw = (path / CREDS_FILE).read_bytes()
    creds = fio.parse(CREDS_FILE, raw, flavour or "node")
    if not isinstance(creds, dict):
        raise InvalidInputError(f"{CREDS_FILE} does not hold a JSON object")
    found = _pick_flavour(creds, flavour, str(path))
    if found != (flavour or "node"):  # the field names decide; parse again with its reviver
        creds = fio.parse(CREDS_FILE, raw, found)
    keys, unknown = fio.scan(path, KeyNameParser(extra_types))
    return found, creds, keys, unknown


async def import_folder(
    store: AuthStore,
    folder: str | os.PathLike[str],
    session_id: str,
    *,
    namespace: str = "default",
    flavour: Flavour | None = None,
    replace: bool = False,
    skip_unknown: bool = False,
    extra_types: Iterable[str] = (),
    batch_size: int = _BATCH,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a Baileys or pyaileys multi-file auth folder into a session.

    Keys go in first, one atomic ``keys.set`` per batch of files, then the creds (compare-and-
    set): a session never has creds before its keys. Re-running the import (also after a crash
    midway) gives the same result; identical creds are not saved again. Keys the session holds
    that the folder lacks are kept (``replace`` drops them). Import while no client runs the
    session (a running client would overwrite the creds with its own).

    Args:
        store: An opened store.
        folder: The auth folder (``creds.json`` is required).
        session_id: The session to import into.
        namespace: Its namespace.
        flavour: ``node`` or ``pyaileys``; ``None`` detects it from ``creds.json``.
        replace: Allow a session holding *different* creds: its keys are cleared first.
        skip_unknown: Import the rest when some files match no known key type (otherwise
            nothing is imported and the files are named in the error).
        extra_types: Key types to accept besides the known ones (ids taken verbatim).
        batch_size: Files per ``keys.set``.
        progress: Called with ``(files done, total)`` after each batch.

    Raises:
        InvalidInputError: not an auth folder, a file that is not BufferJSON, unknown key files.
        ConflictError: the session holds other creds and ``replace`` is false.
        StoreError: any other store failure (keys written so far stay; re-run to finish).
    """
    if batch_size < 1:
        raise InvalidInputError("batch_size must be at least 1")
    path = Path(folder)
    found, creds, keys, unknown = await asyncio.to_thread(_load_folder, path, flavour, extra_types)
    if unknown and not skip_unknown:
        shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise InvalidInputError(
            f"{len(unknown)} file(s) match no known key type ({shown}); "
            "pass the type with extra_types/--key-type, or skip_unknown/--skip-unknown"
        )

    session = store.session(session_id, namespace=namespace)
    version = await session.creds_version()
    stored = await session.load_creds() if version else None
    if stored is not None and stored != creds and not replace:
        raise ConflictError(
            f"session {namespace}/{session_id} already holds different creds; "
            "replace (--replace) overwrites it",
            expected=0,
            actual=version,
        )
    if replace:
        await session.keys.clear()

    counts: dict[str, int] = {}
    empty: list[str] = []
    names = list(keys)
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        values = await asyncio.to_thread(fio.read_files, path, batch, found)
        data: dict[str, dict[str, Any]] = {}
        for name, value in zip(batch, values, strict=True):
            if value is None:
                empty.append(name)
                continue
            key_type, key_id = keys[name]
            data.setdefault(key_type, {})[key_id] = value
            counts[key_type] = counts.get(key_type, 0) + 1
        if data:
            await session.keys.set(data)
        if progress is not None:
            progress(start + len(batch), len(names))

    saved = stored != creds
    if saved:
        version = await session.save_creds(creds, expected_version=version)
    return ImportReport(found, counts, version, saved, tuple(unknown), tuple(empty))


async def export_folder(
    store: AuthStore,
    session_id: str,
    folder: str | os.PathLike[str],
    *,
    namespace: str = "default",
    flavour: Flavour | None = None,
    overwrite: bool = False,
    batch_size: int = _BATCH,
    progress: Progress | None = None,
) -> ExportReport:
    """Write a session as a multi-file auth folder its client loads as it was imported.

    Every file is written atomically (temporary file, fsync, rename); ``creds.json`` comes
    last, so an interrupted export leaves no folder a client would start from. Keys are read in
    batches: export a session no client is writing, or the folder mixes moments.

    Args:
        store: An opened store.
        session_id: The session to export.
        folder: Target folder; created if missing, must be empty unless ``overwrite``.
        namespace: The session's namespace.
        flavour: ``node`` or ``pyaileys``; ``None`` follows the stored creds.
        overwrite: Write into a non-empty folder: its ``creds.json`` is deleted first (so an
            interrupted export leaves none), and its other ``*.json`` files that are not part
            of the export at the end (so the folder mirrors the session).
        batch_size: Keys per ``keys.get``.
        progress: Called with ``(keys done, total)`` after each batch.

    Raises:
        InvalidInputError: no creds, a non-empty folder, two ids sharing one file name.
        OSError: the folder cannot be written.
    """
    path = Path(folder)
    session = store.session(session_id, namespace=namespace)
    creds = await session.load_creds()
    if creds is None:
        raise InvalidInputError(f"session {namespace}/{session_id} has no creds to export")
    found = _pick_flavour(creds, flavour, f"session {namespace}/{session_id}")
    ids = await session.key_ids()
    total = sum(map(len, ids.values()))
    names: dict[str, str] = {}  # file name -> id, so no two keys write one file
    for key_type, type_ids in ids.items():
        for key_id in type_ids:
            name = key_filename(key_type, key_id)
            if names.setdefault(name, key_id) != key_id:
                raise InvalidInputError(
                    f"{key_type} ids {names[name]!r} and {key_id!r} share the file {name}: "
                    "Baileys could not tell them apart"
                )
    await asyncio.to_thread(fio.prepare_target, path, overwrite=overwrite)
    written: set[str] = set()
    counts: dict[str, int] = {}
    done = 0
    for key_type, type_ids in ids.items():
        for start in range(0, len(type_ids), batch_size):
            chunk = type_ids[start : start + batch_size]
            values = await session.keys.get(key_type, chunk)
            files: list[tuple[Path, str]] = []
            for key_id, value in values.items():
                name = key_filename(key_type, key_id)
                written.add(name)
                try:
                    files.append((path / name, dumps(value, found)))
                except InvalidInputError as exc:
                    raise InvalidInputError(f"{key_type} {key_id!r}: {exc}") from None
            await asyncio.to_thread(fio.write_files, files)
            counts[key_type] = counts.get(key_type, 0) + len(files)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    await asyncio.to_thread(fio.write_atomic, path / CREDS_FILE, dumps(creds, found, creds=True))
    removed = await asyncio.to_thread(fio.finish_export, path, written, overwrite=overwrite)
    return ExportReport(found, counts, tuple(removed))
