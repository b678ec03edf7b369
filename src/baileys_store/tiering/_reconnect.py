"""Getting a Redis cache back that was down when the store opened.

A write-through hybrid store opens without its cache when Redis does not answer; then it must
behave as during a cache outage in a run (README "Degraded modes"): the cache tier is marked
offline in the guard (every call refused with :class:`UnavailableError` at once, so reads go to
the durable tier and unleased sessions cannot be written), and this task retries the connection
with a bounded backoff. Once Redis answers, the prefix is bound (the durable tier's marker and
the epoch) before the guard lets other calls through, so nothing uses an unbound cache.

No stale read is possible afterwards for the same reasons as after a runtime outage: with leases
no session could be written while the cache was away (a write needs a lease, and leases live in
Redis), and a new lease drops what the session had cached; without leases every write while the
cache was away failed its cache update and distrusted the session (bypassed until repaired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..contracts import CacheBackend
from ..errors import ConfigError, StoreError
from ..resilience import TierGuard

log = logging.getLogger("baileys_store")


class CacheReconnect:
    """Reconnects the cache tier in the background (see the module doc); stop() ends it."""

    def __init__(
        self,
        cache: CacheBackend,
        guard: TierGuard,
        bind: Callable[[], Awaitable[None]],
        *,
        on_back: Callable[[], None],
        first: float = 0.1,
        cap: float = 5.0,
    ) -> None:
        self._cache, self._guard, self._bind, self._on_back = cache, guard, bind, on_back
        self._first, self._cap = first, cap
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None  # why it gave up (a binding refused), if it did

    def start(self) -> None:
        """Mark the cache offline and start retrying."""
        self._guard.offline.add("cache")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        """True while the cache is still being reconnected."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop retrying (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _attempt(self) -> None:
        async with asyncio.timeout(self._guard.timeout):
            await self._cache.close()  # a half-open client from the failed attempt
            await self._cache.open()
        await self._bind()  # "bind_durable" calls pass the offline guard: bound before use
        self._guard.offline.discard("cache")

    async def _run(self) -> None:
        delay = self._first
        while True:
            await asyncio.sleep(delay)
            try:
                await self._attempt()
            except ConfigError as exc:  # the prefix belongs to another database: never use it
                self.error = str(exc)
                log.error(  # noqa: TRY400 (a refusal, not a crash: no traceback)
                    "cache tier refused: %s; serving from the durable tier only",
                    exc,
                    extra={"event": "cache_refused"},
                )
                return
            except (StoreError, TimeoutError, OSError):
                delay = min(delay * 2, self._cap)
                continue
            log.warning("cache tier reconnected; using it again", extra={"event": "cache_back"})
            self._on_back()
            return
