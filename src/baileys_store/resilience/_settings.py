"""Circuit-breaker tuning and reporting types (the breaker itself is in :mod:`._breaker`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    from .._config import StoreConfig

State = Literal["closed", "open", "half_open"]


def default_is_failure(exc: BaseException) -> bool:
    """Outages are failures; an answer from a working backend (conflict, fenced...) is not."""
    return isinstance(exc, (UnavailableError, OSError, TimeoutError))


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Breaker tuning (see the module doc); :meth:`from_config` reads ``StoreConfig``."""

    failure_pct: float = 50.0
    window: float = 10.0
    buckets: int = 10
    min_calls: int = 10
    reset_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.failure_pct <= 100:
            raise ConfigError("breaker failure_pct must be in (0, 100]")
        if self.window <= 0 or self.reset_timeout <= 0:
            raise ConfigError("breaker window and reset_timeout must be positive")
        if self.buckets < 1 or self.min_calls < 1:
            raise ConfigError("breaker buckets and min_calls must be at least 1")

    @classmethod
    def from_config(cls, config: StoreConfig) -> BreakerSettings:
        """The ``breaker_*`` fields of a :class:`~baileys_store.StoreConfig`."""
        return cls(
            failure_pct=config.breaker_failure_pct,
            window=config.breaker_window,
            buckets=config.breaker_buckets,
            min_calls=config.breaker_min_calls,
            reset_timeout=config.breaker_reset_timeout,
        )


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state and window totals at one moment."""

    state: State
    calls: int
    failures: int
    rejected: int
    opened_at: float | None
    transitions: int
