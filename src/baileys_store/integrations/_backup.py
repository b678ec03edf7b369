"""Backup and restore: every session of a store in one portable, verified file.

Records are kept exactly as stored (the codec's blobs): an encrypted store's backup stays
encrypted under its master keys, whose ids the manifest lists. A blob is bound to its address
(namespace, session, type, id), so a backup restores to the same addresses, into any backend.
The format is ``docs/backup-format.md``; the file layer is :mod:`._backup_file`.

Usage::

    async with open_store(url) as store:
        await backup(store, "nightly.bsb")
    async with open_store(other_url) as store:
        report = await restore(store, "nightly.bsb", dry_run=True)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .._model import KeyWrite, SessionAddr, check_namespace
from .._store import AuthStore
from ..errors import LeaseHeldError
from ..results import BackupReport, RestoreReport
from ._backup_check import Pass, Plan, check_destination
from ._backup_file import CHUNK_BYTES, CHUNK_IDS, VERSION, BackupReader, BackupWriter

__all__ = ["BackupReport", "Progress", "RestoreReport", "backup", "restore"]

PARALLEL = 4  # sessions a restore writes at once (round trips overlap; memory: 4 sessions)
WRITE_IDS = 5_000  # key records per durable write of a restore (one transaction each)

Progress = Callable[[str, int, int], None]
"""Called as ``progress(phase, sessions_done, sessions_total)``; phase ``backup``, ``verify``
or ``restore``."""


def _tool() -> str:
    try:
        return f"baileys-store {metadata.version('baileys-store')}"
    except metadata.PackageNotFoundError:
        return "baileys-store"


async def _backup_session(
    writer: BackupWriter, store: AuthStore, addr: SessionAddr, kids: set[int]
) -> dict[str, Any]:
    """Write one session's frames; returns its manifest entry."""
    durable, codec = store.durable, store.codec
    sha = hashlib.sha256(writer.write(["session", *addr]))
    # Creds first, keys after: keys written meanwhile can only add to what the creds expect.
    record = await durable.load_creds(addr)
    if record is not None:
        blob = bytes(record.blob)
        kids.add(codec.key_id_of(blob))
        sha.update(writer.write(["creds", blob, record.version]))
    by_type: dict[str, list[str]] = {}
    async for key_type, key_id in durable.iter_key_ids(addr):
        by_type.setdefault(key_type, []).append(key_id)
    counts: dict[str, int] = {}
    for key_type, ids in by_type.items():
        for lo in range(0, len(ids), CHUNK_IDS):
            part = ids[lo : lo + CHUNK_IDS]
            blobs = await durable.get_keys(addr, key_type, part)
            chunk: list[list[Any]] = []
            size = 0
            for key_id in part:  # in id order; a key deleted since it was listed is left out
                if (found := blobs.get(key_id)) is None:
                    continue
                blob = bytes(found)
                kids.add(codec.key_id_of(blob))
                chunk.append([key_id, blob])
                size += len(blob)
                if size >= CHUNK_BYTES:
                    sha.update(writer.write(["keys", key_type, chunk]))
                    counts[key_type] = counts.get(key_type, 0) + len(chunk)
                    chunk, size = [], 0
            if chunk:
                sha.update(writer.write(["keys", key_type, chunk]))
                counts[key_type] = counts.get(key_type, 0) + len(chunk)
    return {
        "namespace": addr.namespace,
        "session": addr.session_id,
        "creds": record is not None,
        "creds_version": record.version if record is not None else 0,
        "keys": counts,
        "sha256": sha.hexdigest(),
    }


async def backup(
    store: AuthStore,
    path: str | Path,
    *,
    namespace: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> BackupReport:
    """Write every session (of ``namespace``, or all) to the backup file ``path``.

    The outbox is drained first, so write-behind entries are included. The file appears
    only when complete (a temporary file beside it, fsynced, renamed), with mode 0600.
    Online: each session is read creds first, then keys; a session written during the backup
    is captured as it was at some point of its read, not as one snapshot.

    Raises:
        InvalidInputError: ``path`` exists (without ``overwrite``) or its directory does not.
        UnavailableError: the store could not drain its outbox or answer.
    """
    start = time.monotonic()
    ns = check_namespace(namespace) if namespace is not None else None
    target = Path(path)
    writer = BackupWriter(target, overwrite=overwrite)
    try:
        await store.drain_outbox()
        infos = [i async for i in store.durable.list_sessions(ns)]
        kids: set[int] = set()
        entries = []
        for n, info in enumerate(infos, 1):
            addr = SessionAddr(info.namespace, info.session_id)
            entries.append(await _backup_session(writer, store, addr, kids))
            if progress is not None:
                progress("backup", n, len(infos))
        key_ids = sorted(k for k in kids if k)  # 0: plaintext records
        keys = sum(sum(e["keys"].values()) for e in entries)
        creds = sum(1 for e in entries if e["creds"])
        manifest = {
            "format": "baileys-store-backup",
            "version": VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": _tool(),
            "source": {
                "backend": store.durable.name,
                "encryption": store.config.encryption,
                "key_ids": key_ids,
            },
            "namespace": ns,
            "totals": {"sessions": len(entries), "keys": keys, "creds": creds},
            "sessions": entries,
        }
        size = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    return BackupReport(
        path=str(target),
        sessions=len(entries),
        keys=keys,
        creds=creds,
        bytes=size,
        sha256=writer.digest,
        encryption=store.config.encryption,
        key_ids=tuple(key_ids),
        seconds=time.monotonic() - start,
    )


async def _existing(store: AuthStore, plan: Plan) -> set[SessionAddr]:
    wanted = {a for a, _ in plan.sessions}
    found: set[SessionAddr] = set()
    for ns in sorted({a.namespace for a in wanted}):
        async for info in store.list_sessions(ns):
            if (addr := SessionAddr(info.namespace, info.session_id)) in wanted:
                found.add(addr)
    return found


async def restore(
    store: AuthStore,
    path: str | Path,
    *,
    replace: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RestoreReport:
    """Verify the backup file ``path`` completely, then write its sessions into ``store``.

    Nothing is written unless the whole file verifies (format, every session's SHA-256 and
    counts, the file's SHA-256, one record per session opened with this store's codec).
    Sessions the store already holds are refused (reported in ``existing``; nothing written)
    unless ``replace``. Each session is deleted through the store first (its cache entries
    go, and with leases this process holds its lease while it is restored), then its keys
    and last its creds are written as stored, through the durable tier. Creds versions
    restart at 1.

    Raises:
        OSError: the file cannot be read.
        CorruptDataError: not a backup file, or truncated or altered (nothing was written).
        ConfigError: the store lacks a master key the records need (named), or cannot take
            raw writes safely (a Redis cache without leases).
    """
    start = time.monotonic()
    codec = store.codec
    with BackupReader(Path(path)) as reader:
        plan = Plan(reader)
        check_destination(store, plan)
        check = Pass(reader, plan)
        for obj, raw in reader.frames():
            if isinstance(obj, list) and obj and obj[0] == "session":
                check.end(codec)
                check.begin(obj)
                if progress is not None:
                    progress("verify", check.index, len(plan.sessions))
            else:
                check.record(obj)
            check.sha.update(raw)
        check.finish(codec)
        if progress is not None:
            progress("verify", len(plan.sessions), len(plan.sessions))
        existing = await _existing(store, plan)
        report = RestoreReport(
            path=str(path),
            format_version=reader.version,
            created_at=plan.created_at,
            encryption=plan.encryption,
            key_ids=plan.key_ids,
            sessions=len(plan.sessions),
            keys=plan.keys,
            creds=plan.creds,
            dry_run=dry_run,
            existing=tuple(sorted(str(a) for a in existing)),
        )
        if existing and not replace:
            report.seconds = time.monotonic() - start
            return report
        if dry_run:
            report.restored, report.replaced = len(plan.sessions), len(existing)
        else:
            await _write(
                store, reader, plan=plan, existing=existing, report=report, progress=progress
            )
    report.seconds = time.monotonic() - start
    return report


async def _write(
    store: AuthStore,
    reader: BackupReader,
    *,
    plan: Plan,
    existing: set[SessionAddr],
    report: RestoreReport,
    progress: Progress | None,
) -> None:
    """The second pass: each session is checked again against the manifest, then written.

    Sessions are written ``PARALLEL`` at a time (each one's records held until its digest is
    checked: memory grows with the largest sessions, not with the file), every one keys first,
    creds last; the first failure cancels the others and is raised.
    """
    codec = store.codec
    again = Pass(reader, plan)
    in_use: list[str] = []
    slots = asyncio.Semaphore(PARALLEL)
    chunks: list[list[KeyWrite]] = []

    async def write(addr: SessionAddr, parts: list[list[KeyWrite]], creds: bytes | None) -> None:
        try:
            if await _write_session(store, addr, parts, creds):
                report.restored += 1
                report.replaced += addr in existing
            else:
                in_use.append(str(addr))
        finally:
            slots.release()

    async def complete(group: asyncio.TaskGroup) -> None:
        again.end(codec)  # the file changed since it was verified: write none of this session
        if again.index < 0:
            return
        creds = again.creds[0] if again.creds is not None else None
        await slots.acquire()
        group.create_task(write(again.addr, list(chunks), creds))
        chunks.clear()

    try:
        async with asyncio.TaskGroup() as group:
            for obj, raw in reader.frames():
                if isinstance(obj, list) and obj and obj[0] == "session":
                    await complete(group)
                    again.begin(obj)
                    if progress is not None:
                        progress("restore", again.index, len(plan.sessions))
                else:
                    writes = again.record(obj)
                    if writes:
                        chunks.append(writes)
                again.sha.update(raw)
            await complete(group)
            again.finish(codec)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    report.in_use = tuple(in_use)
    if progress is not None:
        progress("restore", len(plan.sessions), len(plan.sessions))


async def _write_session(
    store: AuthStore, addr: SessionAddr, parts: list[list[KeyWrite]], creds: bytes | None
) -> bool:
    """Write one verified session: keys first, creds last; False when another process holds it."""
    try:
        # Through the store: drops every cached copy, and takes the lease if leased.
        await store.session(addr.session_id, namespace=addr.namespace).delete()
    except LeaseHeldError:
        return False
    durable, batch = store.durable, []
    for writes in parts:  # fewer, larger transactions: up to WRITE_IDS records each
        batch += writes
        if len(batch) >= WRITE_IDS:
            await durable.write_keys(addr, batch)
            batch = []
    if batch:
        await durable.write_keys(addr, batch)
    if creds is not None:
        await durable.save_creds(addr, creds)
    await store.release(addr.session_id, namespace=addr.namespace)
    return True
