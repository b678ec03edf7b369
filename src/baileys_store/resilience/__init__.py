"""Resilience: the rolling-window circuit breaker, the tier call guard, the one retry runner."""

from ._breaker import CircuitBreaker, Guard, TierGuard
from ._retry import RetryPolicy, retrying
from ._settings import BreakerSettings, BreakerSnapshot, State, default_is_failure

__all__ = [
    "BreakerSettings",
    "BreakerSnapshot",
    "CircuitBreaker",
    "Guard",
    "RetryPolicy",
    "State",
    "TierGuard",
    "default_is_failure",
    "retrying",
]
