"""Prometheus metrics of the store, on a caller-supplied registry.

Every label takes its value from a small closed set; anything else is recorded as ``other`` so a
bug cannot explode cardinality. Session ids are never labels. The ``namespace`` label exists only
with ``namespace_label=True`` and then keeps at most :data:`MAX_NAMESPACES` distinct values.

Two :class:`StoreMetrics` on one registry share the same metric families (a module-level cache
keyed weakly by registry): stores opened one after the other in a process, or several stores in
one process, add to the same counters instead of crashing on duplicate registration. Asking for
the same ``prefix`` on one registry with a different ``namespace_label`` raises
:class:`~baileys_store.errors.ConfigError` (the families would need different labels).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry

from ._metric_families import (
    BREAKER_STATES,
    CODEC_KINDS,
    FALLBACK_REASONS,
    FILL_RESULTS,
    LEASE_EVENTS,
    LEVELS,
    MAX_CHILDREN,
    MAX_NAMESPACES,
    OPS,
    OTHER,
    RESULTS,
    TIERS,
    families,
    pick,
)


class Metrics(Protocol):
    """What the store calls; :class:`StoreMetrics` and :class:`NullMetrics` both satisfy it."""

    def observe_op(
        self, op: str, tier: str, result: str, seconds: float, namespace: str = ""
    ) -> None: ...
    def cache_lookup(self, level: str, hits: int, misses: int) -> None: ...
    def durable_fallback(self, reason: str, n: int = 1) -> None: ...
    def cache_fill(self, result: str) -> None: ...
    def version_conflict(self) -> None: ...
    def fenced_write(self) -> None: ...
    def lease_event(self, event: str) -> None: ...
    def breaker_state(self, tier: str, state: str) -> None: ...
    def outbox(self, pending: int, lag_seconds: float) -> None: ...
    def outbox_applied(self, n: int) -> None: ...
    def outbox_retry(self) -> None: ...
    def outbox_dead_letter(self) -> None: ...
    def codec_error(self, kind: str) -> None: ...
    def cache_corrupt_eviction(self, n: int = 1) -> None: ...
    def data_loss(self) -> None: ...
    def retry(self, tier: str) -> None: ...
    def sessions_in_use(self, n: int) -> None: ...


class NullMetrics:
    """Metrics switched off: every method does nothing."""

    __slots__ = ()

    def observe_op(
        self, op: str, tier: str, result: str, seconds: float, namespace: str = ""
    ) -> None:
        """Do nothing."""

    def cache_lookup(self, level: str, hits: int, misses: int) -> None:
        """Do nothing."""

    def durable_fallback(self, reason: str, n: int = 1) -> None:
        """Do nothing."""

    def cache_fill(self, result: str) -> None:
        """Do nothing."""

    def version_conflict(self) -> None:
        """Do nothing."""

    def fenced_write(self) -> None:
        """Do nothing."""

    def lease_event(self, event: str) -> None:
        """Do nothing."""

    def breaker_state(self, tier: str, state: str) -> None:
        """Do nothing."""

    def outbox(self, pending: int, lag_seconds: float) -> None:
        """Do nothing."""

    def outbox_applied(self, n: int) -> None:
        """Do nothing."""

    def outbox_retry(self) -> None:
        """Do nothing."""

    def outbox_dead_letter(self) -> None:
        """Do nothing."""

    def codec_error(self, kind: str) -> None:
        """Do nothing."""

    def cache_corrupt_eviction(self, n: int = 1) -> None:
        """Do nothing."""

    def data_loss(self) -> None:
        """Do nothing."""

    def retry(self, tier: str) -> None:
        """Do nothing."""

    def sessions_in_use(self, n: int) -> None:
        """Do nothing."""


class StoreMetrics:
    """The store's Prometheus metrics (see :data:`METRICS_DOC`).

    Args:
        registry: Where to register; default the global ``prometheus_client.REGISTRY``.
        namespace_label: Add a ``namespace`` label to the operation metrics.
        prefix: Metric name prefix.

    Raises:
        ConfigError: ``prefix`` is already registered on ``registry`` with the other
            ``namespace_label`` setting.
    """

    __slots__ = ("_f",)

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace_label: bool = False,
        prefix: str = "baileys_store",
    ) -> None:
        self._f = families(REGISTRY if registry is None else registry, prefix, namespace_label)

    def _ns(self, namespace: str) -> tuple[str, ...]:
        f = self._f
        if not f.namespace_label:
            return ()
        if namespace in f.namespaces:
            return (namespace,)
        if not namespace or len(f.namespaces) >= MAX_NAMESPACES:
            return (OTHER,)
        f.namespaces.add(namespace)
        return (namespace,)

    def observe_op(
        self, op: str, tier: str, result: str, seconds: float, namespace: str = ""
    ) -> None:
        """Count one operation on ``tier`` with its ``result`` and record its duration."""
        f = self._f
        key = (op, tier, result, *self._ns(namespace))
        children = f.op_children.get(key)
        if children is None:
            op, tier = pick(op, OPS), pick(tier, TIERS)
            ns = key[3:]
            children = (
                f.ops.labels(op, tier, pick(result, RESULTS), *ns),
                f.duration.labels(op, tier, *ns),
            )
            if len(f.op_children) < MAX_CHILDREN:  # raw values may be unbounded: cap the cache
                f.op_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def cache_lookup(self, level: str, hits: int, misses: int) -> None:
        """Count keys looked up at ``level`` (``l1``, ``cache``): ``hits`` found, ``misses`` not."""
        level = pick(level, LEVELS)
        if hits:
            self._f.lookups.labels(level, "hit").inc(hits)
        if misses:
            self._f.lookups.labels(level, "miss").inc(misses)

    def durable_fallback(self, reason: str, n: int = 1) -> None:
        """Count ``n`` reads sent to the durable tier for ``reason``."""
        self._f.fallbacks.labels(pick(reason, FALLBACK_REASONS)).inc(n)

    def cache_fill(self, result: str) -> None:
        """Count one cache fill (``stored``, ``skipped`` or ``failed``)."""
        self._f.fills.labels(pick(result, FILL_RESULTS)).inc()

    def version_conflict(self) -> None:
        """Count one creds version conflict."""
        self._f.conflicts.inc()

    def fenced_write(self) -> None:
        """Count one write refused by a fence."""
        self._f.fenced.inc()

    def lease_event(self, event: str) -> None:
        """Count one lease event."""
        self._f.leases.labels(pick(event, LEASE_EVENTS)).inc()

    def breaker_state(self, tier: str, state: str) -> None:
        """Set the breaker gauge of ``tier``; count a transition when the state changed.

        The first state reported for a tier is not a transition. An unknown state is counted as
        a transition to ``other`` and leaves the gauge as it was.
        """
        tier = pick(tier, TIERS)
        value = BREAKER_STATES.get(state)
        seen = self._f.breaker_seen
        previous = seen.get(tier)
        if value is None:
            self._f.transitions.labels(tier, OTHER).inc()
            return
        if previous is not None and previous != value:
            to = "half_open" if value == 1 else state
            self._f.transitions.labels(tier, to).inc()
        seen[tier] = value
        self._f.breaker.labels(tier).set(value)

    def outbox(self, pending: int, lag_seconds: float) -> None:
        """Record the outbox backlog as last seen: entries pending and the oldest one's age."""
        self._f.pending.set(pending)
        self._f.lag.set(lag_seconds)

    def outbox_applied(self, n: int) -> None:
        """Count ``n`` outbox entries applied to the durable tier."""
        self._f.applied.inc(n)

    def outbox_retry(self) -> None:
        """Count one retried outbox batch."""
        self._f.retries_outbox.inc()

    def outbox_dead_letter(self) -> None:
        """Count one outbox entry moved to the dead letters."""
        self._f.dead.inc()

    def codec_error(self, kind: str) -> None:
        """Count one payload that failed to ``decrypt`` or was ``corrupt``."""
        self._f.codec.labels(pick(kind, CODEC_KINDS)).inc()

    def cache_corrupt_eviction(self, n: int = 1) -> None:
        """Count ``n`` cached records evicted because they failed to decode."""
        self._f.corrupt_evictions.inc(n)

    def data_loss(self) -> None:
        """Count one detected loss of acknowledged write-behind data in Redis."""
        self._f.data_loss.inc()

    def retry(self, tier: str) -> None:
        """Count one retried call to ``tier``."""
        self._f.retries.labels(pick(tier, TIERS)).inc()

    def sessions_in_use(self, n: int) -> None:
        """Set the number of sessions with work in flight or a lease held."""
        self._f.sessions.set(n)


__all__ = ["Metrics", "NullMetrics", "StoreMetrics"]
