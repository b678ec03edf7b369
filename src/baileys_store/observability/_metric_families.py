"""The metric definitions: label value sets, the documented list, and the families on a registry.

Split from :mod:`._metrics` (the :class:`~._metrics.StoreMetrics` that updates them) to keep
modules small.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..errors import ConfigError

OTHER = "other"
MAX_CHILDREN = 4096
MAX_NAMESPACES = 64  # distinct namespace label values kept; the rest count as "other"
DURATION_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

OPS = frozenset(
    {
        "get_keys",
        "write_keys",
        "clear_keys",
        "load_creds",
        "save_creds",
        "delete_session",
        "check",
        "advance_fence",
        "apply_batch",
        "acquire_lease",
        "renew_lease",
        "release_lease",
        "get_blobs",
        "read_keys",
        "fill_keys",
        "update_keys",
        "put_keys",
        "read_creds",
        "get_creds",
        "put_creds",
        "drop",
        "drop_session",
        "wb_keys",
        "wb_creds",
        "drain",
        "list_sessions",
        # calls of the tiers (tier="durable" / "cache") beyond the names above
        "open",
        "bind_durable",
        "put_creds_guarded",
        "requeue_dead",
        "ready_summary",
        "outbox_counters",
        "ready_sessions",
        "claim",
        "ack",
        "fail",
        "release",
        "unready",
    }
)
TIERS = frozenset({"store", "l1", "cache", "durable", "outbox", "lease"})
RESULTS = frozenset({"ok", "error", "unavailable", "conflict", "fenced"})
LEVELS = frozenset({"l1", "cache"})
FALLBACK_REASONS = frozenset({"miss", "cache_error", "untrusted", "not_owner", "breaker_open"})
FILL_RESULTS = frozenset({"stored", "skipped", "failed"})
LEASE_EVENTS = frozenset({"acquired", "renewed", "released", "lost", "held_elsewhere"})
BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
CODEC_KINDS = frozenset({"decrypt", "corrupt", "plaintext", "too_large"})

# (name without prefix, type, labels, meaning); the README table is generated from this.
_DOC = [
    (
        "operations_total",
        "counter",
        "op, tier, result",
        "Operations by outcome (ok, error, unavailable, conflict, fenced): API calls "
        '(`tier="store"`) and each call to the durable tier and the Redis cache.',
    ),
    (
        "operation_duration_seconds",
        "histogram",
        "op, tier",
        "Operation latency, 50 µs to 10 s buckets.",
    ),
    (
        "cache_lookups_total",
        "counter",
        "level, result",
        "Keys looked up in the L1 or cache tier, by hit or miss.",
    ),
    (
        "durable_fallbacks_total",
        "counter",
        "reason",
        "Reads served by the durable tier instead of the cache, by reason.",
    ),
    ("cache_fills_total", "counter", "result", "Cache warming after a durable read."),
    ("version_conflicts_total", "counter", "", "Creds compare-and-set conflicts."),
    ("fenced_writes_total", "counter", "", "Writes refused by a newer lease's fence."),
    ("lease_events_total", "counter", "event", "Session lease lifecycle events."),
    ("breaker_state", "gauge", "tier", "Circuit breaker: 0 closed, 1 half-open, 2 open."),
    ("breaker_transitions_total", "counter", "tier, to", "Circuit breaker state changes."),
    (
        "outbox_pending",
        "gauge",
        "",
        "Sessions with outbox entries not yet drained (as last seen by this process).",
    ),
    ("outbox_lag_seconds", "gauge", "", "Age of the oldest pending outbox entry."),
    ("outbox_applied_total", "counter", "", "Outbox entries applied to the durable tier."),
    ("outbox_retries_total", "counter", "", "Outbox batch applications retried."),
    ("outbox_dead_letters_total", "counter", "", "Outbox entries moved to the dead letters."),
    (
        "codec_errors_total",
        "counter",
        "kind",
        "Payloads that failed to decrypt or decode (decrypt, corrupt, plaintext, too_large).",
    ),
    (
        "cache_corrupt_evictions_total",
        "counter",
        "",
        "Cached records that failed to decode, evicted and re-read from the durable tier.",
    ),
    (
        "data_loss_total",
        "counter",
        "",
        "Times the Redis tier was found to have lost acknowledged write-behind data.",
    ),
    ("retries_total", "counter", "tier", "Retried tier calls."),
    (
        "sessions_in_use",
        "gauge",
        "",
        "Sessions with an operation in flight or a lease held by this process.",
    ),
]
METRICS_DOC: list[tuple[str, str, str, str]] = [
    (f"baileys_store_{name}", kind, labels, meaning) for name, kind, labels, meaning in _DOC
]
"""``(name, type, labels, meaning)`` of every metric, for the README (default prefix)."""


def pick(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


@dataclass(slots=True)
class Families:
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
    corrupt_evictions: Counter
    data_loss: Counter
    retries: Counter
    sessions: Gauge
    namespaces: set[str]
    breaker_seen: dict[str, int]
    # Labelled children of the hot operation metrics, so a call skips ``labels()`` (which
    # validates and takes a lock). Bounded: the label values come from closed sets.
    op_children: dict[tuple[str, ...], tuple[Counter, Histogram]]


_CACHE: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Families]] = (
    weakref.WeakKeyDictionary()
)


def families(registry: CollectorRegistry, prefix: str, namespace_label: bool) -> Families:
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
    fam = Families(
        namespace_label=namespace_label,
        ops=c("operations", doc["operations"], ("op", "tier", "result", *ns)),
        duration=Histogram(
            f"{prefix}_operation_duration_seconds",
            doc["operation_duration_seconds"],
            ("op", "tier", *ns),
            registry=registry,
            buckets=DURATION_BUCKETS,
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
        corrupt_evictions=c("cache_corrupt_evictions", doc["cache_corrupt_evictions"]),
        data_loss=c("data_loss", doc["data_loss"]),
        retries=c("retries", doc["retries"], ("tier",)),
        sessions=g("sessions_in_use", doc["sessions_in_use"]),
        namespaces=set(),
        breaker_seen={},
        op_children={},
    )
    per_registry[prefix] = fam
    return fam
