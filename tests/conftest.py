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
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache, make_durable
from baileys_store.backends.memory import MemoryDurable
from baileys_store.contracts import DurableBackend
from tests.backends import CONTRACT_BACKENDS, DURABLE_BACKENDS

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


@dataclass
class Durable:
    """An opened durable backend (``backend``) on a namespace no other test uses.

    ``another()`` opens a second client on the same data (another pool or process), closed
    with the fixture. ``slow``: every operation is a network round trip of a few ms (the
    MongoDB-protocol test server), so stress scenarios run fewer rounds there.
    """

    name: str
    config: StoreConfig
    backend: DurableBackend
    namespace: str
    others: list[DurableBackend] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return self.name == "mongodb"

    def addr(self, sid: str = "s1") -> SessionAddr:
        return SessionAddr(self.namespace, sid)

    def fresh(self) -> SessionAddr:
        """A session address no earlier call of this test used."""
        return SessionAddr(self.namespace, f"s-{uuid.uuid4().hex[:8]}")

    def make(self) -> DurableBackend:
        """A new, unopened backend on the same data (memory: a new, empty dict)."""
        return make_durable(self.config)

    async def another(self) -> DurableBackend:
        """A second opened client on the same data.

        Memory keeps its data in the object itself: the one object is every "client".
        """
        if isinstance(self.backend, MemoryDurable):
            return self.backend
        other = self.make()
        await other.open()
        self.others.append(other)
        return other

    async def listed(self) -> dict[str, int]:
        """``{session_id: creds_version}`` of the test's namespace."""
        found = self.backend.list_sessions(self.namespace)
        return {i.session_id: i.creds_version async for i in found}


@pytest.fixture(params=DURABLE_BACKENDS)
async def durable(request: pytest.FixtureRequest) -> AsyncIterator[Durable]:
    """Every durable backend of the contract, alone (no store, no cache), opened."""
    name: str = request.param
    built: Any = request.getfixturevalue(f"backend_{name.replace('-', '_')}")
    assert isinstance(built, Backend)
    # No cache: an SQLite file behind an in-process cache is locked to one opener.
    config = StoreConfig(durable=built.config.durable, cache=None)
    backend = make_durable(config)
    await backend.open()
    case = Durable(name, config, backend, built.namespace)
    try:
        yield case
    finally:
        for other in case.others:
            await other.close()
        await backend.close()


def env_flag(name: str) -> bool:
    """True when the environment variable is set to a truthy value."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
