"""MongoDB durable tier (pymongo ``AsyncMongoClient``): ``mongodb://HOST/DB`` or ``mongodb+srv://``.

The package: :class:`MongoDurable` (the backend) and :func:`from_config`, over ``_core``
(client, retries, transactions, the fence wrapper), ``_ops`` (keys and creds), ``_leases``
(fence barrier, outbox batches, leases), ``_listing``, ``_schema`` (layout and ids), ``_url``
and ``_errors``. Atomicity depends on the deployment, detected on open:

* **Replica set or sharded cluster** (a single-node replica set is enough): every write that
  touches keys runs in one transaction: one ordered ``bulk_write`` of all upserts and deletes
  (one ``update`` command, plus one ``delete`` command when the call deletes), then commit.
  With a fencing token, the session document's conditional upsert (``fence <= token``) runs
  first in the same transaction: a stale token aborts before any key is written, and a
  concurrent writer collides on the session document (WriteConflict) and is retried, so
  nothing slips between the check and the writes. Without a token, the session document
  (``updated_at``) is touched after the commit by a plain single-document write, so unfenced
  writers of one session only conflict on the keys they share.
* **Standalone server** (no transactions): the same fence upsert, then the same ordered bulk
  write, without a transaction. Weaker: a failure midway can leave a prefix of the batch applied
  (each upsert sets an absolute value and each delete of a missing key is a no-op, so re-running
  the whole call, as Baileys does, converges), and a writer with a newer token can interleave
  between the fence check and the keys. A warning is logged on open.

Creds are one document, so their compare-and-set needs no transaction: a ``find_one_and_update``
whose filter holds ``version == expected`` and ``fence <= token``. When the filter misses, an
upsert raises E11000 (the document exists with other values): the lost race is diagnosed by
re-reading, and raised as ``FencedError`` / ``ConflictError``; the condition is never dropped.

Retries: transient errors (WriteConflict, TransientTransactionError, dropped connections,
failover codes, upsert races) re-run the whole operation through ``resilience.retrying``
(full-jitter backoff), bounded by ``attempts`` and by ``op_timeout``; a commit with an unknown
result is committed again a few times. The driver's own ``retryWrites``/``retryReads`` add at
most one retry each, and make a retried single-document write apply once.

Logging: pymongo's own DEBUG command log (logger ``pymongo.command``) prints command documents,
stored values included; keep that logger above DEBUG in production (or enable encryption).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...contracts import DurableBackend, LeaseBackend
from ...results import SessionInfo, TierHealth
from . import _leases, _listing, _ops
from ._core import NAME, MongoCore

if TYPE_CHECKING:
    from ..._config import StoreConfig


class MongoDurable(DurableBackend, LeaseBackend):
    """Durable tier on MongoDB, with leases in the same database.

    Args:
        url: ``mongodb://[user:pass@]host[:port][,host...]/[database][?options]`` or
            ``mongodb+srv://...``; database defaults to ``baileys_store``. Standard pymongo URI
            options only (unknown ones raise ``ConfigError``).
        op_timeout: Default for server selection, connect and socket timeouts (seconds), and
            the bound on the retries of one operation.
        attempts: Tries per operation for transient errors.
        client_options: Extra ``AsyncMongoClient`` keyword arguments (e.g. ``event_listeners``,
            an ``SSLContext``); they win over URL options.
        on_retry: Called before each retry (the store counts retries with it).
    """

    name = NAME

    def __init__(
        self,
        url: str,
        *,
        op_timeout: float = 10.0,
        attempts: int = 8,
        client_options: Mapping[str, Any] | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.on_retry: Callable[[], None] = on_retry or (lambda: None)
        self._core = MongoCore(
            url,
            op_timeout=op_timeout,
            attempts=attempts,
            client_options=client_options,
            on_retry=self._retried,
        )
        self.store_id = ""  # known once open

    def _retried(self) -> None:
        # Looks on_retry up at each retry, so the store's later assignment of it is honoured.
        self.on_retry()

    @property
    def database(self) -> str:
        """Name of the database holding the ``bs_*`` collections."""
        return self._core.settings.database

    @property
    def transactions(self) -> bool:
        """Whether the server runs multi-document transactions (known once open)."""
        return self._core.transactions

    async def open(self) -> None:
        """Connect, detect transaction support from ``hello`` and create the schema."""
        self.store_id = await self._core.open()

    async def close(self) -> None:
        """Close the client; idempotent."""
        await self._core.close()

    async def check(self) -> TierHealth:
        """One ``ping``; an outage gives ``ok=False``, never an exception."""
        return await self._core.check()

    # -- keys, creds, sessions (see _ops and _listing) ----------------------------------------

    async def get_keys(
        self, addr: SessionAddr, key_type: str, ids: Sequence[str]
    ) -> dict[str, bytes]:
        """One ``find({_id: {$in: ...}})`` per 5000 ids, sized so no ``getMore`` is needed."""
        return await _ops.get_keys(self._core, addr, key_type, ids)

    async def write_keys(
        self, addr: SessionAddr, writes: Sequence[KeyWrite], *, fence: int | None = None
    ) -> None:
        """One ordered ``bulk_write`` (upserts, then deletes) in one transaction with the fence."""
        await _ops.write_keys(self._core, addr, writes, fence)

    async def clear_keys(self, addr: SessionAddr, *, fence: int | None = None) -> int:
        """``delete_many`` of the session's keys, in one transaction with the fence."""
        return await _ops.clear_keys(self._core, addr, fence)

    async def load_creds(self, addr: SessionAddr) -> CredsRecord | None:
        """The creds of the session document, if saved."""
        return await _ops.load_creds(self._core, addr)

    async def save_creds(
        self,
        addr: SessionAddr,
        blob: bytes,
        *,
        expected_version: int | None = None,
        fence: int | None = None,
    ) -> int:
        """Compare-and-set in one ``find_one_and_update``; see the package docstring."""
        return await _ops.save_creds(self._core, addr, blob, expected_version, fence)

    async def delete_session(self, addr: SessionAddr, *, fence: int | None = None) -> bool:
        """Empty the session document into a fence tombstone and delete its keys, atomically."""
        return await _ops.delete_session(self._core, addr, fence)

    def list_sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Keyset pages of 500 on the ``(namespace, session_id)`` index."""
        return _listing.list_sessions(self._core, namespace)

    def iter_key_ids(self, addr: SessionAddr) -> AsyncIterator[tuple[str, str]]:
        """Every ``(type, id)`` of the session, grouped by type; one short query per page."""
        return _listing.iter_key_ids(self._core, addr)

    async def count_keys(self, addr: SessionAddr) -> dict[str, int]:
        """``{type: count}`` of the session's keys, one aggregation."""
        return await _listing.count_keys(self._core, addr)

    async def bind_meta(self, name: str, value: str, *, replace: bool = False) -> str:
        """Set ``name`` in ``bs_meta`` unless set (always with ``replace``).

        Raises:
            InvalidInputError: ``name`` is one the backend keeps itself (``schema_version``,
                ``store_id``).
        """
        return await _listing.bind_meta(self._core, name, value, replace=replace)

    # -- fences, outbox batches, leases (see _leases) -----------------------------------------

    async def advance_fence(self, addr: SessionAddr, token: int) -> None:
        """Record ``token`` as the session's fence (``FencedError`` if it saw a higher one)."""
        await _leases.advance_fence(self._core, addr, token)

    async def apply_batch(
        self,
        addr: SessionAddr,
        writes: Sequence[KeyWrite],
        creds: CredsRecord | None,
        *,
        seq: int,
        fence: int | None = None,
    ) -> bool:
        """Sequence check, fence check, session update and key writes in one transaction."""
        return await _leases.apply_batch(self._core, addr, writes, creds, seq=seq, fence=fence)

    async def acquire_lease(
        self, addr: SessionAddr, owner: str, ttl_ms: int, *, floor: int = 0
    ) -> int | None:
        """One conditional upsert, judged by the server's clock: a new token, or None when held."""
        return await _leases.acquire_lease(self._core, addr, owner, ttl_ms, floor=floor)

    async def renew_lease(self, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
        """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
        return await _leases.renew_lease(self._core, addr, owner, token, ttl_ms)

    async def release_lease(self, addr: SessionAddr, owner: str, token: int) -> bool:
        """Drop the lease if ``owner`` still holds it with ``token`` (the token stays)."""
        return await _leases.release_lease(self._core, addr, owner, token)


def from_config(
    config: StoreConfig, role: str, *, on_retry: Callable[[], None] | None = None
) -> MongoDurable:
    """The backend for ``config.durable`` (MongoDB is a durable tier only).

    Raises:
        ConfigError: ``role`` is not ``durable``.
    """
    if role != "durable":
        raise errors.ConfigError(
            "mongodb can only be the durable tier; use memory:// or redis:// as the cache"
        )
    return MongoDurable(config.durable, op_timeout=config.op_timeout, on_retry=on_retry)


__all__ = ["MongoDurable", "from_config"]
