"""StoreMetrics: every method hits the right family and labels; labels stay bounded."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from baileys_store import AuthStore, StoreConfig
from baileys_store.errors import ConfigError
from baileys_store.observability import METRICS_DOC, Metrics, NullMetrics, StoreMetrics
from baileys_store.observability._metric_families import MAX_NAMESPACES


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    got = reg.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def test_observe_op_counts_and_times(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg)
    m.observe_op("get_keys", "durable", "ok", 0.003)
    m.observe_op("get_keys", "durable", "ok", 0.2)
    m.observe_op("save_creds", "cache", "conflict", 0.00001, namespace="clinic-1")
    ops = "baileys_store_operations_total"
    assert value(reg, ops, op="get_keys", tier="durable", result="ok") == 2
    assert value(reg, ops, op="save_creds", tier="cache", result="conflict") == 1
    hist = "baileys_store_operation_duration_seconds"
    assert value(reg, hist + "_count", op="get_keys", tier="durable") == 2
    assert value(reg, hist + "_sum", op="get_keys", tier="durable") == pytest.approx(0.203)
    # 50 µs is the first bucket; 10 s the last finite one.
    assert value(reg, hist + "_bucket", op="save_creds", tier="cache", le="5e-05") == 1
    assert value(reg, hist + "_bucket", op="get_keys", tier="durable", le="0.005") == 1
    assert (
        reg.get_sample_value(hist + "_bucket", {"op": "get_keys", "tier": "durable", "le": "10.0"})
        == 2
    )


def test_each_method_updates_its_family(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg)
    m.cache_lookup("l1", hits=3, misses=2)
    m.cache_lookup("cache", hits=0, misses=4)
    m.durable_fallback("breaker_open", 5)
    m.durable_fallback("miss")
    m.cache_fill("stored")
    m.cache_fill("failed")
    m.version_conflict()
    m.fenced_write()
    m.fenced_write()
    m.lease_event("held_elsewhere")
    m.outbox(pending=7, lag_seconds=1.5)
    m.outbox_applied(3)
    m.outbox_retry()
    m.outbox_dead_letter()
    m.codec_error("decrypt")
    m.retry("durable")
    m.sessions_in_use(4)
    p = "baileys_store_"
    assert value(reg, p + "cache_lookups_total", level="l1", result="hit") == 3
    assert value(reg, p + "cache_lookups_total", level="l1", result="miss") == 2
    assert value(reg, p + "cache_lookups_total", level="cache", result="miss") == 4
    assert (
        reg.get_sample_value(p + "cache_lookups_total", {"level": "cache", "result": "hit"}) is None
    )  # zero hits creates no series
    assert value(reg, p + "durable_fallbacks_total", reason="breaker_open") == 5
    assert value(reg, p + "durable_fallbacks_total", reason="miss") == 1
    assert value(reg, p + "cache_fills_total", result="stored") == 1
    assert value(reg, p + "cache_fills_total", result="failed") == 1
    assert value(reg, p + "version_conflicts_total") == 1
    assert value(reg, p + "fenced_writes_total") == 2
    assert value(reg, p + "lease_events_total", event="held_elsewhere") == 1
    assert value(reg, p + "outbox_pending") == 7
    assert value(reg, p + "outbox_lag_seconds") == 1.5
    assert value(reg, p + "outbox_applied_total") == 3
    assert value(reg, p + "outbox_retries_total") == 1
    assert value(reg, p + "outbox_dead_letters_total") == 1
    assert value(reg, p + "codec_errors_total", kind="decrypt") == 1
    assert value(reg, p + "retries_total", tier="durable") == 1
    assert value(reg, p + "sessions_in_use") == 4
    m.outbox(pending=0, lag_seconds=0.0)
    m.sessions_in_use(1)
    assert value(reg, p + "outbox_pending") == 0
    assert value(reg, p + "sessions_in_use") == 1


def test_breaker_state_gauge_and_transitions(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg)
    gauge, trans = "baileys_store_breaker_state", "baileys_store_breaker_transitions_total"
    m.breaker_state("durable", "closed")
    assert value(reg, gauge, tier="durable") == 0
    assert reg.get_sample_value(trans, {"tier": "durable", "to": "closed"}) is None
    m.breaker_state("durable", "open")
    m.breaker_state("durable", "open")  # unchanged: no transition
    assert value(reg, gauge, tier="durable") == 2
    assert value(reg, trans, tier="durable", to="open") == 1
    m.breaker_state("durable", "half_open")
    assert value(reg, gauge, tier="durable") == 1
    m.breaker_state("durable", "half-open")  # both spellings are one state
    assert value(reg, trans, tier="durable", to="half_open") == 1
    m.breaker_state("durable", "closed")
    assert value(reg, trans, tier="durable", to="closed") == 1
    m.breaker_state("cache", "open")  # tiers are independent; the first report is no transition
    assert value(reg, gauge, tier="cache") == 2
    assert value(reg, gauge, tier="durable") == 0
    m.breaker_state("durable", "exploded")
    assert value(reg, trans, tier="durable", to="other") == 1
    assert value(reg, gauge, tier="durable") == 0


def test_unknown_label_values_map_to_other(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg)
    m.observe_op("session:5511/abc", "mars", "weird", 0.1)
    m.observe_op("session:5511/abc", "mars", "weird", 0.1)  # the cached path maps it too
    m.observe_op("session:5511/xyz", "venus", "odd", 0.1)
    m.cache_lookup("l9", 1, 0)
    m.durable_fallback("because")
    m.cache_fill("maybe")
    m.lease_event("stolen")
    m.codec_error("cosmic-ray")
    m.retry("5511@s.whatsapp.net")
    m.breaker_state("somewhere", "open")
    p = "baileys_store_"
    assert value(reg, p + "operations_total", op="other", tier="other", result="other") == 3
    assert value(reg, p + "operation_duration_seconds_count", op="other", tier="other") == 3
    assert value(reg, p + "cache_lookups_total", level="other", result="hit") == 1
    assert value(reg, p + "durable_fallbacks_total", reason="other") == 1
    assert value(reg, p + "cache_fills_total", result="other") == 1
    assert value(reg, p + "lease_events_total", event="other") == 1
    assert value(reg, p + "codec_errors_total", kind="other") == 1
    assert value(reg, p + "retries_total", tier="other") == 1
    assert value(reg, p + "breaker_state", tier="other") == 2
    text = repr([s for fam in reg.collect() for s in fam.samples])
    for leaked in ("5511", "mars", "venus", "weird", "stolen", "cosmic", "halfway", "somewhere"):
        assert leaked not in text


def test_namespace_label_off_drops_it(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg)
    m.observe_op("get_keys", "durable", "ok", 0.01, namespace="clinic-1")
    samples = [s for fam in reg.collect() for s in fam.samples]
    assert samples, "nothing was recorded"
    assert all("namespace" not in s.labels for s in samples)


def test_namespace_label_on_is_bounded(reg: CollectorRegistry) -> None:
    m = StoreMetrics(reg, namespace_label=True)
    m.observe_op("get_keys", "durable", "ok", 0.01, namespace="clinic-1")
    m.observe_op("get_keys", "durable", "ok", 0.01)
    ops = "baileys_store_operations_total"
    assert value(reg, ops, op="get_keys", tier="durable", result="ok", namespace="clinic-1") == 1
    assert value(reg, ops, op="get_keys", tier="durable", result="ok", namespace="other") == 1
    hist = "baileys_store_operation_duration_seconds_count"
    assert value(reg, hist, op="get_keys", tier="durable", namespace="clinic-1") == 1
    for i in range(MAX_NAMESPACES + 10):
        m.observe_op("get_keys", "durable", "ok", 0.01, namespace=f"ns-{i}")
    names = {s.labels["namespace"] for fam in reg.collect() for s in fam.samples if s.name == ops}
    assert len(names) == MAX_NAMESPACES + 1  # the first MAX_NAMESPACES, plus "other"
    assert "ns-0" in names
    assert f"ns-{MAX_NAMESPACES + 5}" not in names
    assert value(reg, ops, op="get_keys", tier="durable", result="ok", namespace="other") == 12


def test_no_label_names_a_session(reg: CollectorRegistry) -> None:
    StoreMetrics(reg, namespace_label=True)
    for collector in list(reg._collector_to_names):
        labels = getattr(collector, "_labelnames", ())
        assert not [name for name in labels if name.lower().startswith("session")]
        assert set(labels) <= {
            "op",
            "tier",
            "result",
            "namespace",
            "level",
            "reason",
            "event",
            "to",
            "kind",
        }


def test_doc_table_matches_registered_families(reg: CollectorRegistry) -> None:
    StoreMetrics(reg)
    registered: dict[str, tuple[str, str]] = {}
    for collector in list(reg._collector_to_names):
        describe = getattr(collector, "describe")  # noqa: B009 - not on the Collector ABC
        for fam in describe():
            kind = fam.type
            name = fam.name + "_total" if kind == "counter" else fam.name
            registered[name] = (kind, ", ".join(getattr(collector, "_labelnames", ())))
    documented = {name: (kind, labels) for name, kind, labels, _ in METRICS_DOC}
    assert documented == registered
    assert len(METRICS_DOC) == len(documented)  # no duplicate rows
    assert all(meaning for *_, meaning in METRICS_DOC)


def test_two_instances_share_one_registry(reg: CollectorRegistry) -> None:
    first = StoreMetrics(reg)
    second = StoreMetrics(reg)
    first.version_conflict()
    second.version_conflict()
    assert value(reg, "baileys_store_version_conflicts_total") == 2
    with pytest.raises(ConfigError, match="namespace_label"):
        StoreMetrics(reg, namespace_label=True)
    other = StoreMetrics(reg, namespace_label=True, prefix="tenant2")
    other.fenced_write()
    assert value(reg, "tenant2_fenced_writes_total") == 1
    assert value(reg, "baileys_store_fenced_writes_total") == 0


def test_default_registry_is_the_global_one() -> None:
    before = value(REGISTRY, "baileys_store_outbox_dead_letters_total")
    StoreMetrics().outbox_dead_letter()
    StoreMetrics().outbox_dead_letter()
    assert value(REGISTRY, "baileys_store_outbox_dead_letters_total") == before + 2


def test_null_metrics_records_nothing_and_both_satisfy_the_protocol() -> None:
    null: Metrics = NullMetrics()
    real: Metrics = StoreMetrics(CollectorRegistry())
    for m in (null, real):
        m.observe_op("get_keys", "durable", "ok", 0.1, namespace="x")
        m.cache_lookup("l1", 1, 1)
        m.durable_fallback("miss")
        m.cache_fill("stored")
        m.version_conflict()
        m.fenced_write()
        m.lease_event("acquired")
        m.breaker_state("cache", "open")
        m.outbox(1, 1.0)
        m.outbox_applied(1)
        m.outbox_retry()
        m.outbox_dead_letter()
        m.codec_error("corrupt")
        m.retry("cache")
        m.sessions_in_use(1)
    public = {n for n in dir(StoreMetrics) if not n.startswith("_")}
    assert public == {n for n in dir(NullMetrics) if not n.startswith("_")}
    assert not hasattr(NullMetrics(), "__dict__")


async def test_a_new_store_reports_its_breakers_closed(reg: CollectorRegistry) -> None:
    gauge = "baileys_store_breaker_state"
    AuthStore(StoreConfig.testing(cache="none"), metrics=StoreMetrics(reg))
    assert reg.get_sample_value(gauge, {"tier": "durable"}) == 0
    assert reg.get_sample_value(gauge, {"tier": "cache"}) is None  # no cache tier: no gauge
    other = CollectorRegistry()
    AuthStore(StoreConfig.testing(), metrics=StoreMetrics(other))
    assert other.get_sample_value(gauge, {"tier": "durable"}) == 0
    assert other.get_sample_value(gauge, {"tier": "cache"}) == 0
