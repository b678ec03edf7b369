"""The rolling-window circuit breaker against a reference model, plus each transition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baileys_store import errors
from baileys_store.resilience import BreakerSettings, CircuitBreaker

SETTINGS = BreakerSettings(failure_pct=50, window=10, buckets=10, min_calls=4, reset_timeout=5)
DOWN = errors.UnavailableError("down")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Model:
    """The semantics spelled out naively: a list of (bucket, kind) events, recomputed."""

    s: BreakerSettings
    events: list[tuple[int, str]] = field(default_factory=list)
    state: str = "closed"
    opened_at: float = 0.0
    trial: bool = False

    def bucket(self, now: float) -> int:
        return int(now // (self.s.window / self.s.buckets))

    def live(self, now: float) -> list[str]:
        oldest = self.bucket(now) - self.s.buckets + 1
        return [k for b, k in self.events if b >= oldest]

    def call(self, now: float, fails: bool) -> str:
        """Returns "rejected", "ok" or "failed" like the breaker should."""
        if self.state == "open":
            if now - self.opened_at >= self.s.reset_timeout and not self.trial:
                self.state, self.trial = "half_open", True
            else:
                self.events.append((self.bucket(now), "rejected"))
                return "rejected"
        self.events.append((self.bucket(now), "call"))
        if not fails:
            if self.state == "half_open":
                self.state, self.trial = "closed", False
            return "ok"
        self.events.append((self.bucket(now), "failure"))
        if self.state == "half_open":
            self.state, self.trial, self.opened_at = "open", False, now
            return "failed"
        live = self.live(now)
        calls = live.count("call") + live.count("rejected")
        failures = live.count("failure")
        if calls >= self.s.min_calls and failures * 100 > self.s.failure_pct * calls:
            self.state, self.opened_at = "open", now
        return "failed"


def state(breaker: CircuitBreaker) -> str:
    """The state, read through a call (mypy would narrow a property across calls)."""
    return breaker.state


def run_call(breaker: CircuitBreaker, fails: bool) -> str:
    try:
        breaker.before_call()
    except errors.BreakerOpenError:
        return "rejected"
    if fails:
        breaker.on_failure(DOWN)
        return "failed"
    breaker.on_success()
    return "ok"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=4), st.booleans()), max_size=120))
def test_breaker_matches_the_model(steps: list[tuple[float, bool]]) -> None:
    clock = Clock()
    breaker = CircuitBreaker("durable", SETTINGS, clock=clock)
    model = Model(SETTINGS)
    for advance, fails in steps:
        clock.now += advance
        assert run_call(breaker, fails) == model.call(clock.now, fails)
        assert state(breaker) == model.state


def test_never_opens_below_min_calls_and_opens_above_the_share() -> None:
    clock = Clock()
    breaker = CircuitBreaker("cache", SETTINGS, clock=clock)
    for _ in range(3):
        run_call(breaker, True)
    assert state(breaker) == "closed"  # 3 failures of 3 calls, below min_calls=4
    run_call(breaker, True)
    assert state(breaker) == "open"
    with pytest.raises(errors.BreakerOpenError) as info:
        breaker.before_call()
    assert info.value.tier == "cache"
    assert breaker.snapshot().rejected == 1


def test_exactly_half_is_not_more_than_half() -> None:
    breaker = CircuitBreaker("d", SETTINGS, clock=Clock())
    for fails in (False, True, False, True):
        run_call(breaker, fails)
    assert state(breaker) == "closed"  # 2 of 4 = 50 %: not strictly more


def test_one_trial_after_reset_then_close_or_reopen() -> None:
    clock = Clock()
    breaker = CircuitBreaker("d", SETTINGS, clock=clock)
    for _ in range(4):
        run_call(breaker, True)
    clock.now += 4.9
    assert run_call(breaker, False) == "rejected"
    clock.now += 0.1
    breaker.before_call()  # the trial
    assert state(breaker) == "half_open"
    with pytest.raises(errors.BreakerOpenError):
        breaker.before_call()  # only one at a time
    breaker.on_failure(DOWN)
    assert state(breaker) == "open"
    clock.now += 5
    assert run_call(breaker, False) == "ok"
    assert state(breaker) == "closed"


def test_answers_of_a_working_backend_are_not_failures() -> None:
    breaker = CircuitBreaker("d", SETTINGS, clock=Clock())
    for _ in range(10):
        breaker.before_call()
        breaker.on_failure(errors.ConflictError("c", expected=1, actual=2))
    assert state(breaker) == "closed"
    assert breaker.snapshot().failures == 0


def test_events_leave_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker("d", SETTINGS, clock=clock)
    for _ in range(3):
        run_call(breaker, True)
    clock.now += 11  # the window moved past them
    run_call(breaker, True)
    assert state(breaker) == "closed"
    assert breaker.snapshot().calls == 1


def test_transition_callback_errors_are_swallowed() -> None:
    seen: list[tuple[str, str, str]] = []

    def on_transition(name: str, old: str, new: str) -> None:
        seen.append((name, old, new))
        raise RuntimeError("metrics bug")

    breaker = CircuitBreaker("d", SETTINGS, clock=Clock(), on_transition=on_transition)
    for _ in range(4):
        run_call(breaker, True)
    assert seen == [("d", "closed", "open")]
    assert breaker.transitions == 1


async def test_cancelled_trial_frees_the_slot_and_concurrent_callers_get_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker("d", SETTINGS, clock=clock)
    for _ in range(4):
        run_call(breaker, True)
    clock.now += 5
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "ok"

    trial = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    others = await asyncio.gather(*(breaker.call(slow) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, errors.BreakerOpenError) for o in others)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert state(breaker) == "open"  # nothing decided, but the slot is free again
    gate.set()
    assert await breaker.call(slow) == "ok"
    assert state(breaker) == "closed"


def test_settings_are_validated() -> None:
    with pytest.raises(errors.ConfigError):
        BreakerSettings(failure_pct=0)
    with pytest.raises(errors.ConfigError):
        BreakerSettings(buckets=0)
