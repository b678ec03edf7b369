"""A SQLite durable tier that fails on demand.

The real outages are in ``tests/fault``; this double makes each branch of the engine and the
outbox worker deterministic (which error, on which call).
"""

from __future__ import annotations

from typing import Any

from baileys_store import errors
from baileys_store.backends.sqlite import SQLiteDurable


class FlakySQLite(SQLiteDurable):
    """Reads, writes and batch applies raise ``fail_with`` while it is set."""

    fail_with: errors.StoreError | None = None
    failed_fences: list[int | None]

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def get_keys(self, *args: Any, **kwargs: Any) -> dict[str, bytes]:
        self._maybe_fail()
        return await super().get_keys(*args, **kwargs)

    async def write_keys(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_with is not None:  # remember the fence: the test may deliver it "late"
            self.__dict__.setdefault("failed_fences", []).append(kwargs.get("fence"))
        self._maybe_fail()
        await super().write_keys(*args, **kwargs)

    async def apply_batch(self, *args: Any, **kwargs: Any) -> bool:
        self._maybe_fail()
        return await super().apply_batch(*args, **kwargs)
