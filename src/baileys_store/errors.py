"""Typed errors raised by baileys-store.

Every failure raises one of these; none is ever turned into "not found". All derive from
:class:`StoreError`, so ``except StoreError`` catches everything the store raises on purpose.
Messages never contain key material, creds or master keys: only addresses, field names and sizes.
"""

from __future__ import annotations

__all__ = [
    "BreakerOpenError",
    "ConfigError",
    "ConflictError",
    "CorruptDataError",
    "DataLossError",
    "DecryptError",
    "FencedError",
    "InvalidInputError",
    "LeaseHeldError",
    "LeaseLostError",
    "OversizeRecordError",
    "PlaintextRecordError",
    "StoreClosedError",
    "StoreError",
    "UnavailableError",
]


class StoreError(Exception):
    """Base class of every error baileys-store raises on purpose."""


class InvalidInputError(StoreError, ValueError):
    """The caller passed something the store refuses to keep.

    Raised for a bad namespace, session id, key type or key id, a value the codec cannot
    serialize, a value over the size limit, or creds whose known fields have the wrong shape
    (for example a key pair that came back as a ``{"type": "Buffer"}`` dict or a base64 string).
    """


class ConfigError(InvalidInputError):
    """The configuration is invalid (raised at start-up, naming the field).

    A malformed master key is always this error, never a silent fallback.
    """


class UnavailableError(StoreError):
    """A tier could not be reached or did not answer in time.

    The operation may or may not have been applied when this is raised from a write; the
    operations of the key store are idempotent, so retrying the same call is safe.
    """


class BreakerOpenError(UnavailableError):
    """A tier's circuit breaker is open: the call was refused without trying the tier.

    The breaker re-tries the tier by itself (one trial call after its reset timeout).

    Attributes:
        tier: ``durable`` or ``cache``.
    """

    def __init__(self, message: str, *, tier: str) -> None:
        super().__init__(message)
        self.tier = tier


class ConflictError(StoreError):
    """A compare-and-set failed: the creds were saved by someone else since they were read.

    Attributes:
        expected: The version the caller expected.
        actual: The version found in the store (``0`` when the session has no creds).
    """

    def __init__(self, message: str, *, expected: int | None, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class FencedError(StoreError):
    """A write carried a fencing token lower than the highest the durable tier has seen.

    The writer lost its lease on the session to another process; it must stop writing.

    Attributes:
        token: The token the write carried.
        current: The highest token the store has seen for the session.
    """

    def __init__(self, message: str, *, token: int, current: int) -> None:
        super().__init__(message)
        self.token = token
        self.current = current


class LeaseLostError(FencedError):
    """This process held the session's lease and lost it (expired, taken over, or not renewable).

    Raised by the next operation that needs the lease; the process must stop serving the session
    (another process may own it now). ``current`` is the token seen in the store, or the lost
    token itself when the store could not be asked.
    """


class LeaseHeldError(StoreError):
    """Another process holds the session's lease, so this one may not write to it.

    Raised when the lease stays held for longer than ``lease_wait`` seconds.
    """


class DecryptError(StoreError):
    """A stored blob failed authentication or its key id is not in the key ring.

    Causes: the wrong master key, a key removed from the ring too early, tampering, or a blob
    copied to another session, tenant, type or id (the address is bound as associated data).
    """


class CorruptDataError(StoreError):
    """A stored blob is malformed: unknown header, truncated data, bad compression or msgpack."""


class PlaintextRecordError(DecryptError):
    """A plaintext (unencrypted) blob was read by an encrypted store.

    Its CRC is unkeyed, so anyone able to write the database or Redis could have forged it; it
    is refused unless ``allow_plaintext_reads=True`` (the migration to encryption). Counted as
    codec error kind ``plaintext``.
    """


class OversizeRecordError(CorruptDataError):
    """A compressed blob would expand past ``max_value_bytes`` (a decompression bomb).

    Refused before the output is allocated; counted as codec error kind ``too_large``.
    """


class StoreClosedError(StoreError):
    """The store was used after :meth:`AuthStore.close` (or outside ``open_store``)."""


class DataLossError(StoreError):
    """The Redis tier lost data the store had acknowledged.

    Causes: a restart without persistence, a failover to a replica that was behind, a
    ``FLUSHALL``, or eviction under a ``maxmemory-policy`` of ``allkeys-*``.

    Detected in write-behind mode, where Redis holds acknowledged writes not yet drained to
    the durable tier: those writes may be gone. The store drops its in-process copies, logs
    an error, counts ``baileys_store_data_loss_total``, reports itself degraded, and raises
    this error from the operation that found the loss. Sessions whose outbox was lost must be
    checked by an operator (their durable state is the last drained one).
    """


def result_of(exc: StoreError) -> str:
    """The ``result`` metric label of an operation that raised ``exc`` (bounded values)."""
    if isinstance(exc, UnavailableError):
        return "unavailable"
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, FencedError):
        return "fenced"
    return "error"
