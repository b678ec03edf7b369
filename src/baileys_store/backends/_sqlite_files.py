"""Temporary alias of :mod:`baileys_store.backends.sqlite` for ``integrations/_folder_io.py``.

Delete once that module imports ``FILE_MODE`` and ``make_private_dirs`` from ``.sqlite``.
"""

from __future__ import annotations

from .sqlite import FILE_MODE, make_private_dirs

__all__ = ["FILE_MODE", "make_private_dirs"]
