"""Hybrid-store backends for the contract suite: a Redis cache over a durable tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from baileys_store import StoreConfig
from tests._services.postgres import PostgresDatabase
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.conftest import Backend


def _cache(redis_server: RedisServer) -> str:
    return with_query(redis_server.url, prefix=unique_prefix(), ttl="600")


@pytest.fixture
def backend_hybrid_wb(redis_server: RedisServer, tmp_path: Path) -> Backend:
    """SQLite under a Redis cache in write-behind mode (outbox + in-process worker)."""
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'store.db'}",
        cache=_cache(redis_server),
        write_mode="write-behind",
    )
    return Backend("hybrid-wb", config)


@pytest.fixture
def backend_hybrid_postgres(redis_server: RedisServer, postgres_db: PostgresDatabase) -> Backend:
    """PostgreSQL under a Redis cache, write-through (leases, L1)."""
    config = StoreConfig(durable=postgres_db.dsn, cache=_cache(redis_server))
    return Backend("hybrid-postgres", config)


@pytest.fixture
def backend_hybrid_postgres_wb(redis_server: RedisServer, postgres_db: PostgresDatabase) -> Backend:
    """PostgreSQL under a Redis cache, write-behind."""
    config = StoreConfig(
        durable=postgres_db.dsn, cache=_cache(redis_server), write_mode="write-behind"
    )
    return Backend("hybrid-postgres-wb", config)
