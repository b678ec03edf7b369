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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._model import SessionAddr
from ._session import _creds_aad, _key_aad
from .errors import ConfigError, LeaseHeldError, StoreError

if TYPE_CHECKING:
    from ._store import AuthStore

_BATCH = 500


@dataclass(slots=True)
class RotationReport:
    """What a rotation did.

    Attributes:
        sessions: Sessions seen.
        rewritten: Records re-encrypted with the active key (with ``verify``: records that
            would be, as they are not under the active key).
        current: Records already under the active key (and authentic).
        in_use: Sessions skipped because another process holds their lease.
        failed: Records that failed to authenticate or decode, left as they are. Anything
            but 0 means the rotation (or the verification) did not succeed.
    """

    sessions: int = 0
    rewritten: int = 0
    current: int = 0
    in_use: int = 0
    failed: int = 0


async def rotate_keys(
    store: AuthStore,
    *,
    namespace: str | None = None,
    progress: Callable[[RotationReport], None] | None = None,
    verify: bool = False,
) -> RotationReport:
    """Re-encrypt every creds and key record with the active master key (see the module doc).

    With ``verify``, only authenticate every record and count; nothing is written.

    Raises:
        ConfigError: the durable backend cannot list a session's keys.
    """
    from .integrations._key_listing import KeyListing  # noqa: PLC0415 - it imports the store

    listing = store.durable
    if not isinstance(listing, KeyListing):
        raise ConfigError(
            f"key rotation needs to list keys, which the {store.durable.name} backend cannot do"
        )
    codec, engine, report = store.codec, store._engine, RotationReport()

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
            return reencode(blob, _creds_aad(addr))

        if not verify:
            await engine.rewrite_creds(addr, transform)
            return
        record = await store._guard("durable", "load_creds", lambda: store.durable.load_creds(addr))
        if record is not None:
            transform(record.blob)

    async def keys(addr: SessionAddr, key_type: str, ids: list[str]) -> None:
        def transform(key_id: str, blob: bytes) -> bytes | None:
            return reencode(blob, _key_aad(addr, key_type, key_id))

        if not verify:
            await engine.rewrite_keys(addr, key_type, ids, transform)
            return
        blobs = await store._guard(
            "durable", "get_keys", lambda: store.durable.get_keys(addr, key_type, ids)
        )
        for key_id, blob in blobs.items():
            transform(key_id, blob)

    sessions = [i async for i in store.list_sessions(namespace)]
    for info in sessions:
        addr = SessionAddr(info.namespace, info.session_id)
        try:
            await creds(addr)
            by_type: dict[str, list[str]] = {}
            async for key_type, key_id in listing.iter_key_ids(addr):
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
