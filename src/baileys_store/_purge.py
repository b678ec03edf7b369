"""Explicit retention: deleting the sessions nobody wrote for a while (``AuthStore.purge``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import InvalidInputError, LeaseHeldError
from .results import PurgeReport

if TYPE_CHECKING:
    from ._store import AuthStore


async def purge_sessions(
    store: AuthStore, older_than: float, *, namespace: str | None, dry_run: bool
) -> PurgeReport:
    """See :meth:`AuthStore.purge`."""
    if not older_than > 0:
        raise InvalidInputError("purge: older_than must be a positive number of seconds")
    cutoff = time.time() - older_than
    old = [i async for i in store.list_sessions(namespace) if i.updated_at < cutoff]
    report = PurgeReport(matched=len(old))
    if dry_run:
        return report
    for info in old:
        try:
            await store.session(info.session_id, namespace=info.namespace).delete()
        except LeaseHeldError:  # in use by another process right now: never deleted
            report.in_use += 1
            continue
        report.deleted += 1
    return report
