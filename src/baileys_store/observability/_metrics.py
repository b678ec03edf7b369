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

import weakref
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ..errors import ConfigError, ConflictError, FencedError, StoreError, UnavailableError

OTHER = "other"
_MAX_CHILDREN = 4096
MAX_NAMESPACES = 64  # distinct namespace label values kept; the rest count as "other"
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

OPS = frozenset({
    "get_keys", "write_keys", "clear_keys", "load_creds", "save_creds", "delete_session",
    "check", "advance_fence", "apply_batch", "acquire_lease", "renew_lease", "release_lease",
    "get_blobs", "read_keys", "fill_keys", "update_keys", "put_keys", "read_creds", "get_creds",
    "put_creds", "drop", "drop_session", "wb_keys", "wb_creds", "drain", "list_sessions",
    # calls of the tiers (tier="durable" / "cache") beyond the names above
    "open", "bind_durable", "put_creds_guarded", "requeue_dead", "ready_summary",
    "outbox_counters", "ready_sessions", "claim", "ack", "fail", "release", "unready",
})
TIERS = frozenset({"store", "l1", "cache", "durable", "outbox", "lease"})
RESULTS = frozenset({"ok", "error", "unavailable", "conflict", "fenced"})
LEVELS = frozenset({"l1", "cache"})
FALLBACK_REASONS = frozenset({"miss", "cache_error", "untrusted", "not_owner", "breaker_open"})
FILL_RESULTS = frozenset({"stored", "skipped", "failed"})
LEASE_EVENTS = frozenset({"acquired", "renewed", "released", "lost", "held_elsewhere"})
BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
CODEC_KINDS = frozenset({"decrypt", "corrupt"})

# (name without prefix, type, labels, meaning); the README table is generated from this.
_DOC = [
    ("operations_total", "counter", "op, tier, result",
     "Operations by outcome (ok, error, unavailable, conflict, fenced): API calls "
     '(`tier="store"`) and each call to the durable tier and the Redis cache.'),
    ("operation_duration_seconds", "histogram", "op, tier",
     "Operation latency, 50 µs to 10 s buckets."),
    ("cache_lookups_total", "counter", "level, result",
     "Keys looked up in the L1 or cache tier, by hit or miss."),
    ("durable_fallbacks_total", "counter", "reason",
     "Reads served by the durable tier instead of the cache, by reason."),
    ("cache_fills_total", "counter", "result", "Cache warming after a durable read."),
    ("version_conflicts_total", "counter", "", "Creds compare-and-set conflicts."),
    ("fenced_writes_total", "counter", "", "Writes refused by a newer lease's fence."),
    ("lease_events_total", "counter", "event", "Session lease lifecycle events."),
    ("breaker_state", "gauge", "tier", "Circuit breaker: 0 closed, 1 half-open, 2 open."),
    ("breaker_transitions_total", "counter", "tier, to", "Circuit breaker state changes."),
    ("outbox_pending", "gauge", "",
     "Sessions with outbox entries not yet drained (as last seen by this process)."),
    ("outbox_lag_seconds", "gauge", "", "Age of the oldest pending outbox entry."),
    ("outbox_applied_total", "counter", "", "Outbox entries applied to the durable tier."),
    ("outbox_retries_total", "counter", "", "Outbox batch applications retried."),
    ("outbox_dead_letters_total", "counter", "", "Outbox entries moved to the dead letters."),
    ("codec_errors_total", "counter", "kind", "Payloads that failed to decrypt or decode."),
    ("retries_total", "counter", "tier", "Retried tier calls."),
    ("sessions_in_use", "gauge", "",
     "Sessions with an operation in flight or a lease held by this process."),
]
METRICS_DOC: list[tuple[str, str, str, str]] = [
    (f"baileys_store_{name}", kind, labels, meaning) for name, kind, labels, meaning in _DOC
]
"""``(name, type, labels, meaning)`` of every metric, for the README (default prefix)."""


def result_of(exc: StoreError) -> str:
    """The ``result`` label of an operation that raised ``exc``."""
    if isinstance(exc, UnavailableError):
        return "unavailable"
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, FencedError):
        return "fenced"
    return "error"


def _pick(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


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

    def retry(self, tier: str) -> None:
        """Do nothing."""


    def sessions_in_use(self, n: int) -> None:
        """Do nothing."""


@dataclass(slots=True)
class _Families:
    namespace_label: bool
    ops: Counter
    duration: Histogram
    lookups: Counter
    fallbacks: Counter
    fills: Counter
    conflicts: Counter
    fenced: Counter
    leases: Counter
    breaker: Gauge
    transitions: Counter
    pending: Gauge
    lag: Gauge
    applied: Counter
    retries_outbox: Counter
    dead: Counter
    codec: Counter
    retries: Counter
    sessions: Gauge
    namespaces: set[str]
    breaker_seen: dict[str, int]
    # Labelled children of the hot operation metrics, so a call skips ``labels()`` (which
    # validates and takes a lock). Bounded: the label values come from closed sets.
    op_children: dict[tuple[str, ...], tuple[Counter, Histogram]]


_CACHE: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Families]] = (
    weakref.WeakKeyDictionary()
)


def _families(registry: CollectorRegistry, prefix: str, namespace_label: bool) -> _Families:
    per_registry = _CACHE.setdefault(registry, {})
    found = per_registry.get(prefix)
    if found is not None:
        if found.namespace_label != namespace_label:
            raise ConfigError(
                f"metrics with prefix {prefix!r} are already registered on this registry with "
                f"namespace_label={found.namespace_label}; use another prefix or registry"
            )
        return found
    ns = ("namespace",) if namespace_label else ()

    def c(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(f"{prefix}_{name}", doc, labels, registry=registry)

    def g(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{prefix}_{name}", doc, labels, registry=registry)

    doc = {name.removesuffix("_total"): meaning for name, _, _, meaning in _DOC}
    fam = _Families(
        namespace_label=namespace_label,
        ops=c("operations", doc["operations"], ("op", "tier", "result", *ns)),
        duration=Histogram(
            f"{prefix}_operation_duration_seconds", doc["operation_duration_seconds"],
            ("op", "tier", *ns), registry=registry, buckets=DURATION_BUCKETS,
        ),
        lookups=c("cache_lookups", doc["cache_lookups"], ("level", "result")),
        fallbacks=c("durable_fallbacks", doc["durable_fallbacks"], ("reason",)),
        fills=c("cache_fills", doc["cache_fills"], ("result",)),
        conflicts=c("version_conflicts", doc["version_conflicts"]),
        fenced=c("fenced_writes", doc["fenced_writes"]),
        leases=c("lease_events", doc["lease_events"], ("event",)),
        breaker=g("breaker_state", doc["breaker_state"], ("tier",)),
        transitions=c("breaker_transitions", doc["breaker_transitions"], ("tier", "to")),
        pending=g("outbox_pending", doc["outbox_pending"]),
        lag=g("outbox_lag_seconds", doc["outbox_lag_seconds"]),
        applied=c("outbox_applied", doc["outbox_applied"]),
        retries_outbox=c("outbox_retries", doc["outbox_retries"]),
        dead=c("outbox_dead_letters", doc["outbox_dead_letters"]),
        codec=c("codec_errors", doc["codec_errors"], ("kind",)),
        retries=c("retries", doc["retries"], ("tier",)),
        sessions=g("sessions_in_use", doc["sessions_in_use"]),
        namespaces=set(),
        breaker_seen={},
        op_children={},
    )
    per_registry[prefix] = fam
    return fam


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
        self._f = _families(REGISTRY if registry is None else registry, prefix, namespace_label)

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
            op, tier = _pick(op, OPS), _pick(tier, TIERS)
            ns = key[3:]
            children = (
                f.ops.labels(op, tier, _pick(result, RESULTS), *ns),
                f.duration.labels(op, tier, *ns),
            )
            if len(f.op_children) < _MAX_CHILDREN:  # raw values may be unbounded: cap the cache
                f.op_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def cache_lookup(self, level: str, hits: int, misses: int) -> None:
        """Count keys looked up at ``level`` (``l1``, ``cache``): ``hits`` found, ``misses`` not."""
        level = _pick(level, LEVELS)
        if hits:
            self._f.lookups.labels(level, "hit").inc(hits)
        if misses:
            self._f.lookups.labels(level, "miss").inc(misses)

    def durable_fallback(self, reason: str, n: int = 1) -> None:
        """Count ``n`` reads sent to the durable tier for ``reason``."""
        self._f.fallbacks.labels(_pick(reason, FALLBACK_REASONS)).inc(n)

    def cache_fill(self, result: str) -> None:
        """Count one cache fill (``stored``, ``skipped`` or ``failed``)."""
        self._f.fills.labels(_pick(result, FILL_RESULTS)).inc()

    def version_conflict(self) -> None:
        """Count one creds version conflict."""
        self._f.conflicts.inc()

    def fenced_write(self) -> None:
        """Count one write refused by a fence."""
        self._f.fenced.inc()

    def lease_event(self, event: str) -> None:
        """Count one lease event."""
        self._f.leases.labels(_pick(event, LEASE_EVENTS)).inc()

    def breaker_state(self, tier: str, state: str) -> None:
        """Set the breaker gauge of ``tier``; count a transition when the state changed.

        The first state reported for a tier is not a transition. An unknown state is counted as
        a transition to ``other`` and leaves the gauge as it was.
        """
        tier = _pick(tier, TIERS)
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
        self._f.codec.labels(_pick(kind, CODEC_KINDS)).inc()

    def retry(self, tier: str) -> None:
        """Count one retried call to ``tier``."""
        self._f.retries.labels(_pick(tier, TIERS)).inc()

    def sessions_in_use(self, n: int) -> None:
        """Set the number of sessions with work in flight or a lease held."""
        self._f.sessions.set(n)
