"""Resilience: the rolling-window circuit breaker and the shared retry policy."""

from ._breaker import (
    BreakerSettings,
    BreakerSnapshot,
    CircuitBreaker,
    State,
    default_is_failure,
)

__all__ = [
    "BreakerSettings",
    "BreakerSnapshot",
    "CircuitBreaker",
    "State",
    "default_is_failure",
]
