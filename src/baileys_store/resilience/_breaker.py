"""A circuit breaker with a rolling failure-rate window (opossum's semantics).

Ours because no maintained Python breaker does a percentage over a rolling window: purgatory,
aiobreaker, pybreaker and circuitbreaker all count consecutive failures, which opens on a short
burst and never on a steady 60 % failure rate. The window is ``window`` seconds cut into
``buckets`` buckets, rotated lazily from an injected monotonic clock (no timer task).

- every call counts in the window: successes, failures, and calls refused while open;
- the breaker is evaluated on a failure only: with at least ``min_calls`` calls in the window
  and failures strictly more than ``failure_pct`` % of them, it opens;
- open: calls are refused with :class:`~baileys_store.errors.BreakerOpenError`; after
  ``reset_timeout`` seconds exactly one trial call passes (half-open) — success closes,
  failure opens again for another ``reset_timeout``; a cancelled trial frees the slot;
- the window is not cleared on state changes.

Granularity: events expire a bucket at a time, i.e. an event counts for between
``window - window/buckets`` and ``window`` seconds.

:class:`TierGuard` applies the breakers to every tier call, with the per-operation deadline; it
lives here, next to the breaker, so a guarded call on the hot path runs in one module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

from ..errors import BreakerOpenError, StoreError, UnavailableError, result_of
from ._settings import BreakerSettings, BreakerSnapshot, State, default_is_failure

T = TypeVar("T")
log = logging.getLogger("baileys_store.breaker")


class CircuitBreaker:
    """See the module doc. ``on_transition(name, old, new)`` errors are logged, never raised."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = default_is_failure,
        on_transition: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = s = settings or BreakerSettings()
        self._clock, self._is_failure, self._on_transition = clock, is_failure, on_transition
        self._width = s.window / s.buckets
        # Per bucket: [bucket index, calls, failures, rejected].
        self._ring = [[-1, 0, 0, 0] for _ in range(s.buckets)]
        self._state: State = "closed"
        self._opened_at: float | None = None
        self._trial = False  # the half-open trial call is running
        self.transitions = 0

    def _bucket(self) -> list[int]:
        index = int(self._clock() // self._width)
        slot = self._ring[index % len(self._ring)]
        if slot[0] != index:
            slot[:] = [index, 0, 0, 0]
        return slot

    def _totals(self) -> tuple[int, int, int]:
        oldest = int(self._clock() // self._width) - len(self._ring) + 1
        live = [b for b in self._ring if b[0] >= oldest]
        return sum(b[1] for b in live), sum(b[2] for b in live), sum(b[3] for b in live)

    def _move(self, new: State) -> None:
        old, self._state = self._state, new
        if old == new:
            return
        self.transitions += 1
        if self._on_transition is not None:
            try:
                self._on_transition(self.name, old, new)
            except Exception:  # a metrics bug must not break storage
                log.warning("breaker transition callback failed", exc_info=True)

    @property
    def state(self) -> State:
        """``closed``, ``open`` or ``half_open`` (the trial call is running).

        An open breaker whose reset timeout elapsed stays ``open`` until the trial is admitted.
        """
        return self._state

    def before_call(self) -> None:
        """Admit a call (maybe as the trial) or raise :class:`BreakerOpenError`."""
        if self._state == "closed":
            self._bucket()[1] += 1
            return
        now = self._clock()
        due = self._opened_at is not None and now - self._opened_at >= self.settings.reset_timeout
        if self._state == "open" and due and not self._trial:
            self._trial = True
            self._move("half_open")
            self._bucket()[1] += 1
            return
        bucket = self._bucket()
        bucket[1] += 1
        bucket[3] += 1
        raise BreakerOpenError(f"{self.name} tier: circuit breaker open", tier=self.name)

    def on_success(self) -> None:
        """Record a success; a successful trial closes the breaker."""
        if self._state == "half_open":
            self._trial = False
            self._opened_at = None
            self._move("closed")

    def on_failure(self, exc: BaseException) -> None:
        """Record ``exc``: a failure (per ``is_failure``) may open the breaker."""
        if not self._is_failure(exc):
            self.on_success()
            return
        self._bucket()[2] += 1
        if self._state == "half_open":
            self._trip()
            return
        calls, failures, _ = self._totals()
        if calls >= self.settings.min_calls and failures * 100 > self.settings.failure_pct * calls:
            self._trip()

    def on_cancel(self) -> None:
        """The call was cancelled: decide nothing, but free the trial slot."""
        if self._state == "half_open":
            self._trial = False
            self._move("open")

    def _trip(self) -> None:
        self._trial = False
        self._opened_at = self._clock()
        self._move("open")

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` through the breaker."""
        self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.on_failure(exc)
            else:
                self.on_cancel()
            raise
        self.on_success()
        return result

    def snapshot(self) -> BreakerSnapshot:
        """State and window totals now."""
        calls, failures, rejected = self._totals()
        return BreakerSnapshot(
            self._state, calls, failures, rejected, self._opened_at, self.transitions
        )


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
