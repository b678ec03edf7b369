"""Temporary alias of :mod:`baileys_store.backends.sqlite._schema` for the contract tests.

Delete once ``tests/contract/test_durable_batches.py`` imports ``SCHEMA_VERSION`` from there.
"""

from __future__ import annotations

from .sqlite._schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
