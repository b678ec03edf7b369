"""The embedded default durable tier: one SQLite file in WAL mode.

:class:`SQLiteDurable` is the backend (``sqlite:///FILE``); :func:`sqlite_path` reads its URL.
Every file it creates is private (``FILE_MODE``, folders by :func:`make_private_dirs`).

Modules: ``_writer`` (the backend and its group-commit writer), ``_keys`` (key and creds write
transactions), ``_leases`` (leases, fences, tombstones), ``_queries`` (reads, listings, inline
reads), ``_schema`` (schema, migrations, metadata, statements), ``_connect`` (opening the file's
connections and threads), ``_files`` (file creation, modes, error mapping), ``_url``.
"""

from __future__ import annotations

from ._files import FILE_MODE, make_private_dirs
from ._url import sqlite_path
from ._writer import SQLiteDurable

__all__ = ["FILE_MODE", "SQLiteDurable", "make_private_dirs", "sqlite_path"]
