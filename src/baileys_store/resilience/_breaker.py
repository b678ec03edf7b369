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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from ..errors import BreakerOpenError, ConfigError, UnavailableError

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
log = logging.getLogger("baileys_store.breaker")


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
    def from_config(cls, config: object) -> BreakerSettings:
        """The ``breaker_*`` fields of a :class:`~baileys_store.StoreConfig`."""
        return cls(
            failure_pct=getattr(config, "breaker_failure_pct"),  # noqa: B009
            window=getattr(config, "breaker_window"),  # noqa: B009
            buckets=getattr(config, "breaker_buckets"),  # noqa: B009
            min_calls=getattr(config, "breaker_min_calls"),  # noqa: B009
            reset_timeout=getattr(config, "breaker_reset_timeout"),  # noqa: B009
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
