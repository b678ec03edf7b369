"""Online master-key rotation: re-encrypt every record with the active key.

Add the new key to ``master_keys`` (it becomes active as the highest id, or set
``active_key_id``), restart the application (new writes use it at once), run the rotation, then
drop the old key. Each record is re-written under its session's write lock, read fresh from the
durable tier, so the application's own writes (same process) can run alongside; a session leased
by another process is skipped and counted (run again later, or in that process). Records already
under the active key are left alone, so a rotation can stop and resume at any point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._model import SessionAddr
from ._session import _creds_aad, _key_aad
from .errors import ConfigError, LeaseHeldError

if TYPE_CHECKING:
    from ._store import AuthStore

_BATCH = 500


@dataclass(slots=True)
class RotationReport:
    """What a rotation did: sessions seen, records re-encrypted or already current, in use."""

    sessions: int = 0
    rewritten: int = 0
    current: int = 0
    in_use: int = 0


async def rotate_keys(
    store: AuthStore,
    *,
    namespace: str | None = None,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-encrypt every creds and key record with the active master key (see the module doc).

    Raises:
        ConfigError: the durable backend cannot list a session's keys.
    """
    from .integrations._key_listing import KeyListing  # noqa: PLC0415 - it imports the store

    listing = store.durable
    if not isinstance(listing, KeyListing):
        raise ConfigError(f"key rotation needs to list keys, which the {store.durable.name} "
                          "backend cannot do")  # fmt: skip
    codec, engine, report = store.codec, store._engine, RotationReport()

    def reencode(blob: bytes, aad: bytes) -> bytes | None:
        if codec.is_current(blob):
            report.current += 1
            return None
        report.rewritten += 1
        return codec.encode(codec.decode(blob, aad), aad)

    sessions = [i async for i in store.list_sessions(namespace)]
    for info in sessions:
        addr = SessionAddr(info.namespace, info.session_id)
        try:
            await engine.rewrite_creds(addr, lambda b, a=addr: reencode(b, _creds_aad(a)))  # type: ignore[misc]
            ids: dict[str, list[str]] = {}
            async for key_type, key_id in listing.iter_key_ids(addr):
                ids.setdefault(key_type, []).append(key_id)
            for key_type, all_ids in ids.items():
                for lo in range(0, len(all_ids), _BATCH):
                    await engine.rewrite_keys(
                        addr, key_type, all_ids[lo : lo + _BATCH],
                        lambda i, b, a=addr, t=key_type: reencode(b, _key_aad(a, t, i)),  # type: ignore[misc]
                    )  # fmt: skip
        except LeaseHeldError:
            report.in_use += 1
        report.sessions += 1
        if progress is not None:
            progress(report)
    return report
