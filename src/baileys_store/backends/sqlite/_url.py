"""The SQLite tier's URL: ``sqlite:///FILE`` to a path, and a path to the URI SQLite opens."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ... import errors


def sqlite_path(url: str) -> Path:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc not in ("", "localhost"):
        raise errors.ConfigError(
            f"not a sqlite URL with a path: use sqlite:///FILE ({parts.scheme})"
        )
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:":
        raise errors.ConfigError(
            "sqlite URL needs a file path; use memory:// for a throwaway store"
        )
    return Path(path)


def sqlite_uri(path: Path) -> str:
    """The URI that opens ``path`` read-write and never creates it (see :mod:`._files`)."""
    return f"file:{quote(os.fspath(path))}?mode=rw"
