"""Resilience: the rolling-window circuit breaker and the shared retry policy."""

from ._breaker import (
    BreakerSettings,
    BreakerSnapshot,
    CircuitBreaker,
    State,
    default_is_failure,
)
from ._retry import RetryPolicy, retrying

__all__ = [
    "BreakerSettings",
    "BreakerSnapshot",
    "CircuitBreaker",
    "RetryPolicy",
    "State",
    "default_is_failure",
    "retrying",
]
