"""Online master-key rotation: re-encrypt every record with the active key.

Add the new key to ``master_keys`` (it becomes active as the highest id, or set
``active_key_id``), restart the application (new writes use it at once), run the rotation, then
drop the old key. Each record is re-written under its session's write lock, read fresh from the
durable tier, so the application's own writes (same process) can run alongside; a session leased
by another process is skipped and counted (run again later, or in that process). Records already
under the active key are left alone, so a rotation can stop and resume at any point.

Every record is authenticated (decoded), current or not: one that fails (tampered, a key no
longer in the ring, a plaintext record in an encrypted store) is left as it is and counted in
``failed``, so a rotation over damaged data never reports success. ``verify=True`` only checks:
it reads the durable tier, counts, and writes nothing.

Migrating a plaintext store to encryption: open it with ``encryption`` and ``master_keys`` set
and ``allow_plaintext_reads=True`` (the store is marked encrypted from then on), run the
rotation (plaintext records are re-written encrypted; they count as ``rewritten``), check that
``failed`` is 0, then drop ``allow_plaintext_reads``: from then on a plaintext record is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .._model import KeyWrite, SessionAddr
from ..codec import creds_aad, key_aad
from ..errors import LeaseHeldError, StoreError
from ..results import RotationReport, SessionInfo
from ._state import CREDS

if TYPE_CHECKING:
    from ._engine import Engine

_BATCH = 500


async def rotate_keys(
    engine: Engine,
    sessions: AsyncIterator[SessionInfo],
    *,
    progress: Callable[[RotationReport], None] | None = None,
    verify: bool = False,
) -> RotationReport:
    """Re-encrypt every creds and key record of ``sessions`` with the active master key.

    With ``verify``, only authenticate every record and count; nothing is written.
    """
    codec, report = engine.codec, RotationReport()
    durable, guard = engine.durable, engine.guard

    def reencode(blob: bytes, aad: bytes) -> bytes | None:
        try:
            value = codec.decode(blob, aad)  # authenticate it, even when it is current
            if codec.is_current(blob):
                report.current += 1
                return None
            new = None if verify else codec.encode(value, aad)
        except StoreError:
            report.failed += 1
            return None
        report.rewritten += 1
        return new

    async def creds(addr: SessionAddr) -> None:
        def transform(blob: bytes) -> bytes | None:
            return reencode(blob, creds_aad(*addr))

        if not verify:
            await rewrite_creds(engine, addr, transform)
            return
        record = await guard("durable", "load_creds", lambda: durable.load_creds(addr))
        if record is not None:
            transform(record.blob)

    async def keys(addr: SessionAddr, key_type: str, ids: list[str]) -> None:
        def transform(key_id: str, blob: bytes) -> bytes | None:
            return reencode(blob, key_aad(*addr, key_type, key_id))

        if not verify:
            await rewrite_keys(engine, addr, key_type, ids, transform)
            return
        blobs = await guard("durable", "get_keys", lambda: durable.get_keys(addr, key_type, ids))
        for key_id, blob in blobs.items():
            transform(key_id, blob)

    listed = [i async for i in sessions]
    for info in listed:
        addr = SessionAddr(info.namespace, info.session_id)
        try:
            await creds(addr)
            by_type: dict[str, list[str]] = {}
            async for key_type, key_id in durable.iter_key_ids(addr):
                by_type.setdefault(key_type, []).append(key_id)
            for key_type, all_ids in by_type.items():
                for lo in range(0, len(all_ids), _BATCH):
                    await keys(addr, key_type, all_ids[lo : lo + _BATCH])
        except LeaseHeldError:
            report.in_use += 1
        report.sessions += 1
        if progress is not None:
            progress(report)
    return report


async def rewrite_keys(
    engine: Engine,
    addr: SessionAddr,
    key_type: str,
    ids: list[str],
    transform: Callable[[str, bytes], bytes | None],
) -> int:
    """Re-write stored blobs in place; returns how many changed.

    Read and write happen under the session's write lock, after draining its outbox, from
    the durable tier: no write of this process can slip in between, and other processes
    cannot write the session (they would need its lease). ``transform`` returns the new
    blob, or ``None`` to leave one as it is.
    """
    tiers, writes = engine.tiers, engine.writes
    touched = frozenset((key_type, i) for i in ids)
    async with tiers.states.use(addr, write=True, touched=touched):
        lease = await tiers.lease(addr, write=True)
        await writes.drain_first(addr)
        blobs = await tiers.guard(
            "durable", "get_keys", lambda: tiers.durable.get_keys(addr, key_type, ids)
        )
        new = [
            KeyWrite(key_type, i, blob)
            for i, old in blobs.items()
            if (blob := transform(i, old)) is not None
        ]
        if new:
            await writes.through_keys(addr, lease, new, buffer=False)
        return len(new)


async def rewrite_creds(
    engine: Engine, addr: SessionAddr, transform: Callable[[bytes], bytes | None]
) -> bool:
    """Re-write the stored creds blob in place, keeping the version chain."""
    tiers, writes = engine.tiers, engine.writes
    async with tiers.states.use(addr, write=True, touched=frozenset({CREDS})):
        lease = await tiers.lease(addr, write=True)
        await writes.drain_first(addr)
        record = await tiers.guard("durable", "load_creds", lambda: tiers.durable.load_creds(addr))
        new = transform(record.blob) if record is not None else None
        if record is None or new is None:
            return False
        await writes.through_creds(addr, lease, new, record.version, buffer=False)
        return True
