"""Copy sessions between two stores (``baileys-store copy``), online, resumable and verified.

Values go through the public API: decoded by the source's codec, encoded by the destination's,
so two stores with different encryption or compression settings work. One session at a time,
keys in chunks of :data:`CHUNK` ids: memory holds one session's id listing and one chunk of
values, whatever the number of sessions.

Per session, in order:

1. The destination is looked at. Empty: the session is copied. Otherwise both sides are
   compared (key counts, then the content digest): the same → ``identical`` (skipped); the
   destination without creds → an interrupted copy, deleted and copied again; with creds and
   different → ``conflict`` (refused) unless ``replace`` (deleted and copied again).
2. The copy reads the source's creds first, then its keys chunk by chunk (each chunk written to
   the destination as it is read), and writes the creds last: a destination session without
   creds is known incomplete, and the creds copied are never newer than the keys copied
   (Baileys writes keys before the creds that refer to them). When the source's creds version
   changed during the read, the session is read again (up to :data:`ATTEMPTS` times, then
   ``changed``): a live source session is copied from a read that no creds save interleaved.
3. The destination is read back: key counts and digest must equal the copy's, else ``failed``.

The digest is SHA-256 over ``msgpack([type, id, value])`` of every key in ``(type, id)`` order
(Python string order, so it does not depend on a server's collation), then
``msgpack(["creds", creds])`` (``None`` without creds). Versions are not part of it: the
destination numbers its own creds versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._session import SessionAuth
from .._store import AuthStore
from ..codec._serialize import pack
from ..errors import ConfigError, ConflictError, LeaseHeldError, StoreError
from ..results import CopyReport, SessionCopy

__all__ = ["ATTEMPTS", "CHUNK", "copy_sessions", "session_digest"]

CHUNK = 500  # ids per keys.get / keys.set
PARALLEL = 4  # sessions copied at once (their round trips overlap; memory: 4 sessions' chunks)
ATTEMPTS = 3  # reads of a source session whose creds keep changing
Sink = Callable[[str, dict[str, Any]], Awaitable[None]]
Progress = Callable[[SessionCopy, CopyReport], None]


@dataclass(frozen=True, slots=True)
class _Content:
    """What one read of a session saw: key count, digest, creds (and their version)."""

    keys: int
    digest: str
    creds: dict[str, Any] | None
    version: int


class _ChangedError(Exception):
    """The source's creds version moved during a read."""


async def _read(session: SessionAuth, sink: Sink | None = None) -> _Content:
    """Read a whole session (creds first, then keys by chunk), hashing it; feed ``sink``."""
    creds, version = await session.load_versioned_creds()
    listing = await session.key_ids()
    digest, n = hashlib.sha256(), 0
    for key_type in sorted(listing):
        ids = sorted(listing[key_type])
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            values = await session.keys.get(key_type, chunk)
            for key_id in chunk:
                if key_id in values:  # deleted since the listing: not part of this read
                    digest.update(pack([key_type, key_id, values[key_id]]))
            n += len(values)
            if sink is not None and values:
                await sink(key_type, values)
    digest.update(pack(["creds", creds]))
    if await session.creds_version() != version:
        raise _ChangedError
    return _Content(n, digest.hexdigest(), creds, version)


async def session_digest(session: SessionAuth) -> tuple[int, str]:
    """``(keys, digest)`` of one session, as ``copy_sessions`` compares and verifies them.

    Raises:
        StoreError: a tier could not answer, or a value cannot be read back.
    """
    try:
        content = await _read(session)
    except _ChangedError:
        content = await _read(session)  # a second read only if creds moved during the first
    return content.keys, content.digest


async def _transfer(src: SessionAuth, dst: SessionAuth) -> _Content:
    """Copy keys chunk by chunk, then creds (last); the content as read from the source."""

    async def write(key_type: str, values: dict[str, Any]) -> None:
        await dst.keys.set({key_type: values})

    content = await _read(src, write)
    if content.creds is not None:
        await dst.save_creds(content.creds, expected_version=0)
    return content


async def _copy_one(
    src: SessionAuth, dst: SessionAuth, *, replace: bool, dry_run: bool
) -> SessionCopy:
    """One session's copy (see the module doc); raises only ``_ChangedError`` and store errors."""
    ns, sid = src.namespace, src.session_id
    dst_version = await dst.creds_version()
    dst_counts = await dst.key_counts()
    src_counts = await src.key_counts()
    src_keys = sum(src_counts.values())  # reported by refusals and dry runs
    wiped = ""
    if dst_version or dst_counts:
        if dst_counts == src_counts:  # else different for sure: no digests
            source = await _read(src)
            keys, digest = await session_digest(dst)
            if (keys, digest) == (source.keys, source.digest):
                return SessionCopy(ns, sid, "identical", keys, digest)
        if dst_version and not replace:
            detail = "the destination holds a different session (pass --replace to overwrite)"
            return SessionCopy(ns, sid, "conflict", src_keys, "", detail)
        wiped = "replace" if dst_version else "finish"
        if dry_run:
            return SessionCopy(ns, sid, f"would_{wiped}", src_keys)
        await dst.delete()
    elif dry_run:
        return SessionCopy(ns, sid, "would_copy", src_keys)
    written = await _transfer(src, dst)
    keys, digest = await session_digest(dst)
    if (keys, digest) != (written.keys, written.digest):
        detail = f"read back differs from the copy ({keys} keys, {written.keys} written)"
        return SessionCopy(ns, sid, "failed", written.keys, written.digest, detail)
    return SessionCopy(ns, sid, "replaced" if wiped == "replace" else "copied", keys, digest)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _copy_session(
    source: AuthStore, dest: AuthStore, ns: str, sid: str, *, replace: bool, dry_run: bool
) -> SessionCopy:
    """:func:`_copy_one` with retries on a moving source, and errors as outcomes."""
    src, dst = source.session(sid, namespace=ns), dest.session(sid, namespace=ns)
    try:
        for _ in range(ATTEMPTS):
            try:
                return await _copy_one(src, dst, replace=replace, dry_run=dry_run)
            except _ChangedError:
                continue  # a partial destination has no creds: the next attempt redoes it
        detail = f"its creds changed during each of {ATTEMPTS} reads (in heavy use): rerun"
        return SessionCopy(ns, sid, "changed", 0, "", detail)
    except LeaseHeldError as exc:
        return SessionCopy(ns, sid, "in_use", 0, "", _one_line(exc))
    except ConflictError as exc:  # creds saved at the destination meanwhile
        return SessionCopy(ns, sid, "conflict", 0, "", _one_line(exc))
    except StoreError as exc:
        return SessionCopy(ns, sid, "failed", 0, "", _one_line(exc))
    finally:
        if not dry_run:  # let the destination's applications take the session at once
            with contextlib.suppress(StoreError):
                await dest.release(sid, namespace=ns)


_COUNTERS = {
    "copied": "copied",
    "replaced": "copied",
    "would_copy": "copied",
    "would_replace": "copied",
    "would_finish": "copied",
    "identical": "identical",
    "conflict": "conflicts",
    "in_use": "in_use",
    "changed": "changed",
    "failed": "failed",
}


def _count(report: CopyReport, result: SessionCopy) -> None:
    counter = _COUNTERS[result.status]
    setattr(report, counter, getattr(report, counter) + 1)
    if counter == "copied":
        report.keys += result.keys
        report.replaced += result.status in ("replaced", "would_replace")
    elif counter != "identical":
        report.sessions.append(result)


async def copy_sessions(
    source: AuthStore,
    dest: AuthStore,
    *,
    namespace: str | None = None,
    session: str | None = None,
    replace: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every session (creds and all keys) of ``source`` into ``dest``; both open.

    Online: the source keeps serving (reads take no lease). Rerunning after an interruption
    finishes the job: identical sessions are skipped, a destination session without creds (an
    interrupted copy) is redone. A destination session whose lease another process holds is
    skipped and counted (``in_use``); nothing is ever written beside a live holder.

    Args:
        source: The store to read.
        dest: The store to write (another data set: the same one is a ConfigError).
        namespace: Only this namespace (default: all; with ``session``: ``default``).
        session: Only this session id.
        replace: Delete and rewrite destination sessions that differ (else refused).
        dry_run: Write nothing; report what would be done (``would_*`` statuses).
        progress: Called after each session with its outcome and the running report.

    Raises:
        ConfigError: the two stores are the same data set.
        StoreError: listing the source failed (per-session errors are outcomes instead).
    """
    if source.durable.store_id and source.durable.store_id == dest.durable.store_id:
        raise ConfigError("source and destination are the same store")
    report, started = CopyReport(), time.monotonic()
    if session is not None:
        namespace = namespace or "default"
    slots = asyncio.Semaphore(PARALLEL)

    async def one(ns: str, sid: str) -> None:
        try:
            result = await _copy_session(source, dest, ns, sid, replace=replace, dry_run=dry_run)
            _count(report, result)
            if progress is not None:
                progress(result, report)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            async for info in source.list_sessions(namespace):
                if session is not None and info.session_id != session:
                    if info.session_id > session:  # listed in order: it is not there
                        break
                    continue
                report.seen += 1
                await slots.acquire()
                group.create_task(one(info.namespace, info.session_id))
    except BaseExceptionGroup as failed:  # per-session store errors are outcomes: a bug
        raise failed.exceptions[0] from None
    report.sessions.sort(key=lambda r: (r.namespace, r.session_id))  # as listed, not as done
    report.seconds = time.monotonic() - started
    return report
