"""The one retry runner (``resilience.retrying``): what it retries, how often, what it reports."""

from __future__ import annotations

import pytest

from baileys_store.resilience import RetryPolicy, retrying


class FlakyError(Exception):
    """A transient failure for these tests."""


def _policy(attempts: int, retried: list[int], before: list[BaseException]) -> RetryPolicy:
    async def before_retry(exc: BaseException) -> None:
        before.append(exc)

    return RetryPolicy(
        attempts=attempts,
        transient=lambda exc: isinstance(exc, FlakyError),
        base=0.0001,
        cap=0.001,
        on_retry=lambda: retried.append(1),
        before_retry=before_retry,
    )


async def test_a_lambda_returning_a_coroutine_is_retried_and_awaited() -> None:
    calls: list[int] = []

    async def once() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise FlakyError("not yet")
        return "done"

    retried: list[int] = []
    before: list[BaseException] = []
    result = await retrying(_policy(5, retried, before), lambda: once())  # noqa: PLW0108
    assert result == "done"
    assert len(calls) == 3
    assert len(retried) == 2  # each retry counted once
    assert [str(e) for e in before] == ["not yet", "not yet"]


async def test_attempts_bound_the_calls_and_the_last_error_is_raised() -> None:
    calls: list[int] = []

    async def always() -> None:
        calls.append(1)
        raise FlakyError(f"attempt {len(calls)}")

    with pytest.raises(FlakyError, match="attempt 4"):
        await retrying(_policy(4, [], []), always)
    assert len(calls) == 4


async def test_a_permanent_error_is_not_retried() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("permanent")

    with pytest.raises(ValueError, match="permanent"):
        await retrying(_policy(4, [], []), broken)
    assert len(calls) == 1


async def test_one_attempt_means_no_retry() -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        raise FlakyError("once")

    with pytest.raises(FlakyError):
        await retrying(_policy(1, [], []), flaky)
    assert len(calls) == 1
