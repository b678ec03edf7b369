"""The one retry runner: bounded attempts, full-jitter exponential backoff, transient only.

Every backend retries through :func:`retrying` with its own :class:`RetryPolicy` (what is
transient is the backend's knowledge; how to retry is the same everywhere). The first attempt
runs without any retry machinery: the common case costs one ``try``. Built on tenacity's
``AsyncRetrying`` (per call, no global state).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one backend retries.

    Attributes:
        attempts: Tries in all (1: never retry).
        transient: True for an error worth another attempt (nothing was applied, or the
            operation is idempotent and the connection broke).
        base: Backoff multiplier in seconds (the n-th wait is uniform in ``[0, base * 2**n]``).
        cap: Longest single wait in seconds.
        deadline: Seconds after which no new attempt starts (``None``: attempts only).
        on_retry: Called before each retry (the store counts them in ``retries_total``).
        before_retry: Awaited with the failure before each retry (e.g. purge a pool).
    """

    attempts: int
    transient: Callable[[BaseException], bool]
    base: float = 0.02
    cap: float = 0.5
    deadline: float | None = None
    on_retry: Callable[[], None] | None = None
    before_retry: Callable[[BaseException], Awaitable[None]] | None = None


async def retrying(policy: RetryPolicy, fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()``, retrying transient errors per ``policy``; the last error is raised."""
    try:
        return await fn()
    except Exception as exc:
        if policy.attempts <= 1 or not policy.transient(exc):
            raise
        first = exc
    if policy.before_retry is not None:
        await policy.before_retry(first)
    if policy.on_retry is not None:
        policy.on_retry()

    async def before_sleep(state: RetryCallState) -> None:
        if policy.on_retry is not None:
            policy.on_retry()
        exc = state.outcome.exception() if state.outcome is not None else None
        if policy.before_retry is not None and isinstance(exc, BaseException):
            await policy.before_retry(exc)

    stop = stop_after_attempt(policy.attempts - 1)
    if policy.deadline is not None:
        stop = stop | stop_after_delay(policy.deadline)  # type: ignore[assignment]

    async def attempt() -> T:  # tenacity awaits only coroutine functions: not a lambda's result
        return await fn()

    runner = AsyncRetrying(
        wait=wait_random_exponential(multiplier=policy.base, max=policy.cap),
        stop=stop,
        retry=retry_if_exception(policy.transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await runner(attempt)
