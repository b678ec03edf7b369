"""The stores users run today, measured beside ours in the same run.

- :class:`FolderTarget`: pyaileys' ``MultiFileAuthState`` key store, unchanged: one JSON file
  (Baileys ``BufferJSON``) per key, ``creds.json`` rewritten on every save, no fsync.
- :class:`BlobTarget`: the Node anchor's design, written here only as a baseline: one msgpack
  blob per session holding creds and every key, read-modify-write on every ``set``, in SQLite
  (WAL, ``synchronous=NORMAL``, like the folder store: no fsync per write).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
from pyaileys.auth.store import MultiFileKeyStore
from pyaileys.util import json as bufferjson

from ._workload import KeyStoreLike


def tree_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except FileNotFoundError:
                continue
    return total


def sqlite_size(path: Path) -> int:
    """Bytes of a SQLite database and its WAL, after folding the WAL into the file.

    A separate connection checkpoints (TRUNCATE): the WAL file otherwise keeps its high-water
    size and would be counted as data.
    """
    if path.exists():
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


class FolderTarget:
    """pyaileys' folder store, one folder per session."""

    name = "pyaileys-folder"

    def __init__(self, root: Path) -> None:
        self._root = root
        self._stores: dict[str, KeyStoreLike] = {}

    def keys(self, session_id: str) -> KeyStoreLike:
        """The session's ``MultiFileKeyStore``."""
        store = self._stores.get(session_id)
        if store is None:
            folder = self._root / session_id
            folder.mkdir(parents=True, exist_ok=True)
            store = self._stores[session_id] = MultiFileKeyStore(folder)
        return store

    async def save_creds(self, session_id: str, creds: dict[str, Any]) -> None:
        """What ``MultiFileAuthState.save_creds`` does: rewrite ``creds.json``."""
        self.keys(session_id)
        path = self._root / session_id / "creds.json"
        await asyncio.to_thread(path.write_text, bufferjson.dumps(creds, indent=2), "utf-8")

    async def footprint(self) -> dict[str, int | None]:
        """Bytes on disk."""
        return {"disk_bytes": await asyncio.to_thread(tree_size, self._root), "memory_bytes": None}

    async def close(self) -> None:
        """Nothing to release."""


class _BlobKeys:
    __slots__ = ("_sid", "_target")

    def __init__(self, target: BlobTarget, session_id: str) -> None:
        self._target = target
        self._sid = session_id

    async def get(self, key_type: str, ids: list[str], /) -> Mapping[str, Any]:
        blob = await self._target.load(self._sid)
        bucket = blob.get("keys", {}).get(key_type, {})
        return {i: bucket[i] for i in ids if i in bucket}

    async def set(self, data: Any, /) -> None:
        def apply(blob: dict[str, Any]) -> None:
            keys = blob.setdefault("keys", {})
            for key_type, items in data.items():
                bucket = keys.setdefault(key_type, {})
                for key_id, value in items.items():
                    if value is None:
                        bucket.pop(str(key_id), None)
                    else:
                        bucket[str(key_id)] = value

        await self._target.modify(self._sid, apply)


class BlobTarget:
    """A whole-session blob per session in SQLite (anchor style)."""

    name = "session-blob"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bench-blob")
        self._locks: dict[str, asyncio.Lock] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS blobs (sid TEXT PRIMARY KEY, data BLOB) WITHOUT ROWID"
        )

    def _read(self, sid: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT data FROM blobs WHERE sid = ?", (sid,)).fetchone()
        if row is None:
            return {}
        value: dict[str, Any] = msgpack.unpackb(row[0], raw=False, strict_map_key=False)
        return value

    async def load(self, sid: str) -> dict[str, Any]:
        """The decoded blob of ``sid`` (read and unpacked on the worker thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, sid)

    async def modify(self, sid: str, apply: Any) -> None:
        """Read, change, re-encode and write the whole blob, one writer per session."""

        def rmw() -> None:
            blob = self._read(sid)
            apply(blob)
            data = msgpack.packb(blob, use_bin_type=True)
            self._conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (sid, data))

        lock = self._locks.setdefault(sid, asyncio.Lock())
        async with lock:  # without it, concurrent sets lose updates (the anchor's bug)
            await asyncio.get_running_loop().run_in_executor(self._pool, rmw)

    def keys(self, session_id: str) -> KeyStoreLike:
        """The session's key store view."""
        return _BlobKeys(self, session_id)

    async def save_creds(self, session_id: str, creds: dict[str, Any]) -> None:
        """Creds live in the same blob: the whole blob is rewritten."""

        def apply(blob: dict[str, Any]) -> None:
            blob["creds"] = creds

        await self.modify(session_id, apply)

    async def footprint(self) -> dict[str, int | None]:
        """Bytes on disk."""
        return {
            "disk_bytes": await asyncio.to_thread(sqlite_size, self._path),
            "memory_bytes": None,
        }

    async def close(self) -> None:
        """Close the connection and the thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._conn.close)
        self._pool.shutdown(wait=True)
