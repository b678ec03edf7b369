"""Helpers shared by the per-backend integration tests (PostgreSQL, MongoDB, Redis)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import pytest

from baileys_store import errors
from baileys_store._model import SessionAddr
from baileys_store.contracts import DurableBackend


class _Openable(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


B = TypeVar("B", bound=_Openable)


@contextlib.asynccontextmanager
async def opened(backend: B) -> AsyncIterator[B]:
    """``backend`` opened for the block, closed after it."""
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def fresh(namespace: str) -> SessionAddr:
    """A session address in ``namespace`` no other call returned."""
    return SessionAddr(namespace, f"s-{uuid.uuid4().hex[:8]}")


def assert_not_leaked(exc: BaseException, *secrets: str) -> None:
    """No secret in the message or repr of ``exc`` nor of any exception it was raised from."""
    err: BaseException | None = exc
    while err is not None:
        for secret in secrets:
            assert secret not in str(err)
            assert secret not in repr(err)
        err = err.__cause__


async def assert_meta_names_reserved(backend: DurableBackend) -> None:
    """The backend's own meta rows are not a store's to bind; any other name is."""
    for name in ("schema_version", "store_id"):
        with pytest.raises(errors.InvalidInputError):
            await backend.bind_meta(name, "x")
    assert await backend.bind_meta("fingerprints", "a,b") == "a,b"
