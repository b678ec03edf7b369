"""Shared fixtures: one ``backend`` fixture parametrised over every backend of the contract."""

from __future__ import annotations

import importlib.util
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig
from baileys_store.backends._registry import make_cache
from baileys_store.backends.memory import MemoryDurable
from baileys_store.contracts import DurableBackend
from tests.backends import CONTRACT_BACKENDS

# Server harness plugins (one per server); each starts its server once per test run.
pytest_plugins = [
    name
    for name in (
        "tests._services.redis",
        "tests._services.postgres",
        "tests._services.mongo",
        "tests._services.hybrid",
    )
    if importlib.util.find_spec(name) is not None
]


@dataclass
class Backend:
    """A configured backend plus a namespace no other test uses.

    ``open()`` opens a fresh :class:`AuthStore` on the same data each time it is called, so
    tests can prove that state survives a re-open. ``durable_factory`` builds the durable
    backend for in-process stores that must be shared between opens.
    """

    name: str
    config: StoreConfig
    namespace: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:12]}")
    durable_factory: Callable[[], DurableBackend] | None = None
    _shared: DurableBackend | None = None

    def make(self) -> AuthStore:
        """A new, unopened store."""
        if self.durable_factory is None:
            return AuthStore(self.config)
        if self._shared is None:
            self._shared = self.durable_factory()
        return AuthStore(self.config, durable=self._shared, cache=make_cache(self.config))

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AuthStore]:
        store = self.make()
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def test_master_key() -> str:
    """A random master key, hex encoded."""
    return secrets.token_hex(32)


@pytest.fixture
def backend_memory() -> Backend:
    return Backend("memory", StoreConfig(durable="memory://"), durable_factory=MemoryDurable)


@pytest.fixture
def backend_sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", StoreConfig(durable=f"sqlite:///{tmp_path / 'store.db'}"))


@pytest.fixture
def backend_sqlite_nocache(tmp_path: Path) -> Backend:
    return Backend(
        "sqlite-nocache",
        StoreConfig(
            durable=f"sqlite:///{tmp_path / 'store.db'}", cache=None, sqlite_synchronous="normal"
        ),
    )


@pytest.fixture
def backend_sqlite_encrypted(tmp_path: Path) -> Backend:
    return Backend(
        "sqlite-encrypted",
        StoreConfig(
            durable=f"sqlite:///{tmp_path / 'store.db'}",
            encryption="aes-256-gcm",
            master_keys={1: test_master_key()},
            compression="zstd",
            compression_threshold=64,
        ),
    )


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend of the contract, one test run each."""
    name: str = request.param
    value: Any = request.getfixturevalue(f"backend_{name.replace('-', '_')}")
    assert isinstance(value, Backend)
    return value


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[AuthStore]:
    async with backend.open() as opened:
        yield opened


def env_flag(name: str) -> bool:
    """True when the environment variable is set to a truthy value."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
