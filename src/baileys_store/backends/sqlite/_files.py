"""Files of the SQLite tier, created private, and SQLite's errors as the store's.

The database holds private keys, so every file the store creates is 0600 and every folder
0700, whatever the umask: the files are created here with ``os.open`` and that mode before
SQLite opens them (SQLite gives ``-wal`` and ``-shm`` the database file's mode), and SQLite is
then told never to create the database itself (``mode=rw``). A file that exists keeps its mode.
A missing folder is an error unless the caller asked for it to be created: a typo in a path
must not open an empty store (and lead to a new pairing).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ... import errors

FILE_MODE = 0o600
DIR_MODE = 0o700

# A path that names nothing usable, or that this process may not use: the operator's to fix.
# Anything else (EIO, ENOSPC, EMFILE, ...) is an outage of the file system.
_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENXIO,
        errno.ENODEV,
        errno.EINVAL,
        errno.EEXIST,
    }
)


def path_error(path: Path, exc: OSError, what: str = "SQLite database") -> errors.StoreError:
    """``exc`` as the store's error: ConfigError for a bad path, UnavailableError for I/O."""
    reason = exc.strerror or type(exc).__name__
    message = f"cannot open the {what} {path}: {reason}"
    if exc.errno in _PATH_ERRNOS:
        return errors.ConfigError(message)
    return errors.UnavailableError(message)


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700 (existing ones keep their mode)."""
    missing: list[Path] = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        # Created beside us: fine if it is a folder (the caller's next step checks).
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, DIR_MODE)


def prepare_db_file(path: Path, *, create: bool, create_dirs: bool) -> None:
    """Check that ``path`` is a regular file (or create it, 0600) before SQLite opens it.

    Args:
        path: The database file.
        create: Create the file when missing; ``False`` (read-only commands) makes a missing
            file a ConfigError and creates nothing.
        create_dirs: Create a missing parent folder (0700) instead of raising.

    Raises:
        ConfigError: a missing file (``create=False``) or folder (``create_dirs=False``), a
            path that is not a regular file, or one this process may not open.
        UnavailableError: an I/O error of the file system.
    """
    parent = path.parent
    try:
        if not os.path.lexists(path):
            if not create:
                raise errors.ConfigError(
                    f"no SQLite database at {path} (this command does not create one; "
                    "check the path)"
                )
            if not parent.is_dir():
                if os.path.lexists(parent):
                    raise errors.ConfigError(
                        f"{parent} (folder of the SQLite database) is not a folder"
                    )
                if not create_dirs:
                    raise errors.ConfigError(
                        f"the folder of the SQLite database does not exist: {parent} (create "
                        "it, or set create_dirs=True / BAILEYS_STORE_CREATE_DIRS=1)"
                    )
                make_private_dirs(parent)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        if os.path.lexists(path) and not stat.S_ISREG(os.stat(path).st_mode):
            raise errors.ConfigError(f"the SQLite database {path} is not a regular file")
        fd = os.open(path, flags, FILE_MODE)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the checks
                raise errors.ConfigError(f"the SQLite database {path} is not a regular file")
        finally:
            os.close(fd)
    except OSError as exc:
        raise path_error(path, exc) from None


def open_lock_file(path: Path) -> IO[bytes]:
    """``<path>.lock`` opened for ``flock``, created 0600 when missing."""
    lock = path.parent / (path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise path_error(lock, exc, "lock file") from None
    return os.fdopen(fd, "ab")


def lock_file(path: Path, *, exclusive: bool) -> IO[bytes]:
    """``<path>.lock``, held with a shared or exclusive ``flock`` (see ``SQLiteDurable``)."""
    lock = open_lock_file(path)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(lock.fileno(), mode | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise errors.UnavailableError(
            f"{path.name} is open elsewhere and one side keeps an in-process cache; "
            "use cache=none everywhere to share one SQLite file between stores"
        ) from None
    return lock


# SQLite's answers at open that mean the path names no usable database (not an outage).
_PATH_CODES = frozenset(
    {
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    }
)


def open_error(path: Path, exc: sqlite3.Error) -> errors.StoreError:
    """An error of SQLite while opening ``path``: ConfigError for a bad file, else an outage."""
    code = getattr(exc, "sqlite_errorcode", None)
    message = f"cannot open the SQLite database {path}: {exc}"
    if code is not None and code & 0xFF in _PATH_CODES:
        return errors.ConfigError(message)
    return errors.UnavailableError(message)


def typed_error(exc: BaseException) -> BaseException:
    """SQLite's errors as the store's: an outage, or a closed store."""
    if isinstance(exc, sqlite3.Error):
        err = errors.UnavailableError(f"sqlite: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err
    if isinstance(exc, RuntimeError) and "shutdown" in str(exc):
        return errors.StoreClosedError("sqlite backend is closed")
    return exc


def fail_group(futs: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """Fail every caller still waiting on a write group that failed as a whole (BEGIN/COMMIT).

    Each gets an error object of its own (a shared one would pile up tracebacks); a cancelled
    group (the store closing) is an outage for its callers, not their cancellation.
    """
    for fut in futs:
        if fut.done():
            continue
        if isinstance(exc, sqlite3.Error):
            fut.set_exception(typed_error(type(exc)(*exc.args)))
        elif isinstance(exc, asyncio.CancelledError):
            fut.set_exception(
                errors.UnavailableError("sqlite: the write group was cancelled (store closing)")
            )
        else:
            fut.set_exception(typed_error(exc))
