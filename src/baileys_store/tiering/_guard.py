"""The call guard every tier call goes through: circuit breaker, per-operation timeout, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

from ..errors import StoreError, UnavailableError
from ..observability._metric_families import result_of
from ..resilience import CircuitBreaker

T = TypeVar("T")


class Guard(Protocol):
    """``await guard(tier, op, fn)``: ``fn()``, the tier's ``op``, under breaker and timeout."""

    def __call__(self, tier: str, op: str, fn: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


class TierGuard:
    """Breakers per tier (``durable``, ``cache``) and one timeout for every call.

    A timeout becomes :class:`UnavailableError` (and counts as a breaker failure); an open
    breaker refuses with :class:`~baileys_store.errors.BreakerOpenError` without calling.
    ``abandon_durable``: durable calls are abandoned at the deadline rather than cancelled in
    place (see :meth:`_abandoning`); off for a backend whose calls cancel at once (SQLite's run
    on their own thread, memory's never wait), which saves a task per call. ``local_cache``:
    the cache is in this process (it cannot hang or go down), so its calls run unguarded (and
    untimed: a metric would cost more than the call). ``observe(op, tier, result, seconds)``
    (the store's ``Metrics.observe_op``) records every other call, refused and timed-out ones
    included; a cancelled call is not an outcome of the tier and is not recorded. ``offline``:
    tiers not connected yet (a Redis cache that was down when the store opened, until the
    store's reconnect task gets it back): their calls are refused with
    :class:`UnavailableError` without calling, as an outage during a run would answer.
    """

    __slots__ = ("abandon_durable", "breakers", "local_cache", "observe", "offline", "timeout")

    def __init__(
        self,
        breakers: dict[str, CircuitBreaker],
        timeout: float,
        *,
        observe: Callable[[str, str, str, float], None],
        abandon_durable: bool = True,
        local_cache: bool = False,
    ) -> None:
        self.breakers = breakers
        self.timeout = timeout
        self.abandon_durable = abandon_durable
        self.local_cache = local_cache
        self.observe = observe
        self.offline: set[str] = set()

    async def __call__(self, tier: str, op: str, fn: Callable[[], Awaitable[T]], /) -> T:
        if self.local_cache and tier == "cache":
            return await fn()
        start = time.perf_counter()
        result: str | None = "ok"
        try:
            if tier in self.offline and op != "bind_durable":  # binding comes first when back
                return await _refuse(tier)  # not tried: the breaker is not told
            return await self._guarded(tier, fn)
        except asyncio.CancelledError:
            result = None
            raise
        except StoreError as exc:
            result = result_of(exc)
            raise
        except BaseException:
            result = "error"
            raise
        finally:
            if result is not None:
                self.observe(op, tier, result, time.perf_counter() - start)

    async def _guarded(self, tier: str, fn: Callable[[], Awaitable[T]]) -> T:
        breaker = self.breakers.get(tier)
        if breaker is not None:
            breaker.before_call()
        try:
            if tier == "durable" and self.abandon_durable:
                result = await self._abandoning(fn)
            else:
                async with asyncio.timeout(self.timeout):
                    result = await fn()
        except TimeoutError:
            exc = UnavailableError(f"{tier} tier did not answer within {self.timeout}s")
            if breaker is not None:
                breaker.on_failure(exc)
            raise exc from None
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.on_cancel()
            raise
        except BaseException as exc:
            if breaker is not None:
                breaker.on_failure(exc)
            raise
        if breaker is not None:
            breaker.on_success()
        return result

    async def _abandoning(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` with the deadline, not waiting for the call's own cancellation.

        A driver may take long to cancel (psycopg waits up to 10 s for a cancel request to a
        server that does not answer): the caller gets its error at the deadline and the call
        is cancelled in the background. A write that still lands later is harmless: it carries
        a fence (or outbox sequence) older than any write made after it, and is rejected.
        """
        task = asyncio.ensure_future(fn())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()
            task.add_done_callback(_consume)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            raise TimeoutError
        return task.result()


async def _refuse(tier: str) -> NoReturn:
    raise UnavailableError(f"{tier} tier is not connected (reconnecting)")


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
