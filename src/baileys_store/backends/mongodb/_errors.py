"""Which pymongo errors are worth a retry, and how every driver error becomes a StoreError."""

from __future__ import annotations

from bson.errors import BSONError, InvalidBSON
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from ... import errors
from ._url import MongoSettings

# WriteConflict, and the "primary went away" family a failover produces.
_TRANSIENT_CODES = frozenset({112, 91, 189, 10107, 11600, 11602, 13435, 13436})
_DUPLICATE_KEY = 11000


class LostRace(Exception):  # noqa: N818 - internal signal, never leaves the backend
    """A conditional upsert lost to a concurrent writer; the whole operation is retried."""


class FenceMiss(Exception):  # noqa: N818 - internal signal, never leaves the backend
    """The session upsert hit E11000: the fence is stale, or an insert raced ours."""


def _all_duplicate_keys(exc: BulkWriteError) -> bool:
    errs = exc.details.get("writeErrors") or []
    return bool(errs) and all(e.get("code") == _DUPLICATE_KEY for e in errs)


def is_transient(exc: BaseException) -> bool:
    """True for errors after which re-running the whole operation is safe and may succeed.

    Every operation the backend retries is idempotent (absolute upserts and deletes, a fence
    check, a version compare-and-set that recognises its own earlier success), so a retry after
    an error of unknown outcome cannot apply anything twice. Not retried: waits that already
    used their full timeout (server selection, pool checkout) and a commit whose outcome is
    unknown after the driver's own commit retries.
    """
    if isinstance(exc, LostRace):
        return True
    if (
        not isinstance(exc, PyMongoError)
        or exc.has_error_label("UnknownTransactionCommitResult")
        # Already waited their full timeout (the driver labels them transient in a transaction).
        or isinstance(exc, (ServerSelectionTimeoutError, WaitQueueTimeoutError))
    ):
        return False
    if exc.has_error_label("TransientTransactionError") or exc.has_error_label(
        "RetryableWriteError"
    ):
        return True
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, BulkWriteError):
        return _all_duplicate_keys(exc)
    # DuplicateKeyError here is an upsert race: two inserts of one new _id.
    return isinstance(exc, OperationFailure) and (
        isinstance(exc, DuplicateKeyError) or exc.code in _TRANSIENT_CODES
    )


def is_unknown_commit(exc: BaseException) -> bool:
    """A commit whose outcome is unknown: committing again is the documented remedy."""
    return isinstance(exc, PyMongoError) and exc.has_error_label("UnknownTransactionCommitResult")


def describe(exc: BaseException) -> str:
    """Type and server message, never the server's error document.

    ``str()`` of a pymongo ``OperationFailure`` appends the whole error document, and for a
    bulk write that document holds the failing operation: the key's value. Callers that keep
    the original exception as ``__cause__`` must therefore not do so for these errors.
    """
    if isinstance(exc, BulkWriteError):
        errs = exc.details.get("writeErrors") or []
        first = errs[0] if errs else {}
        msg = f"{len(errs)} write error(s), first: code {first.get('code')}: {first.get('errmsg')}"
    elif isinstance(exc, OperationFailure):
        msg = f"code {exc.code}: {(exc.details or {}).get('errmsg', '')}"
    else:
        msg = str(exc)
    return f"{type(exc).__name__}: {msg}"


def wrap(exc: BaseException, what: str, settings: MongoSettings) -> errors.StoreError:
    """The typed error for a driver failure; the message never holds the URL's secrets."""
    if isinstance(exc, errors.StoreError):
        return exc
    if isinstance(exc, LostRace):
        return errors.UnavailableError(
            f"mongodb {what}: concurrent writers kept winning; gave up after bounded retries"
        )
    detail = settings.scrub(describe(exc))[:400]
    if isinstance(exc, DocumentTooLarge):
        detail = "document over the BSON size limit"
    kind: type[errors.StoreError] = errors.UnavailableError
    if isinstance(exc, InvalidBSON):
        kind = errors.CorruptDataError  # a stored document the driver cannot decode
    elif isinstance(exc, BSONError):
        kind = errors.InvalidInputError  # something we were asked to store cannot be encoded
    elif isinstance(exc, ConfigurationError):
        kind = errors.ConfigError
    elif isinstance(exc, InvalidOperation) and "after close" in str(exc):
        kind, detail = errors.StoreClosedError, "backend is closed"
    return kind(f"mongodb {what}: {detail}")


__all__ = ["FenceMiss", "LostRace", "describe", "is_transient", "is_unknown_commit", "wrap"]
