"""Store operations become OpenTelemetry spans, named by operation, without session ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baileys_store import StoreConfig, errors, open_store
from baileys_store.observability import NullMetrics, set_tracing, tracing_enabled


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    was = tracing_enabled()
    set_tracing(True, provider=provider)
    yield spans
    set_tracing(was)


async def test_store_operations_are_spans(exporter: InMemorySpanExporter) -> None:
    async with open_store(StoreConfig.testing(), metrics=NullMetrics()) as store:
        sess = store.session("5511999@s.whatsapp.net", namespace="clinic-7")
        await sess.keys.set({"session": {"1.0": b"x"}})
        await sess.keys.get("session", ["1.0"])
        with pytest.raises(errors.ConflictError):
            await sess.save_creds({"registrationId": 1}, expected_version=3)
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names[:3] == [
        "baileys_store.write_keys",
        "baileys_store.get_keys",
        "baileys_store.save_creds",
    ]
    attrs = dict(spans[0].attributes or {})
    assert attrs == {
        "db.system": "memory",
        "db.operation.name": "write_keys",
        "db.namespace": "clinic-7",
        "baileys_store.tier": "store",
    }
    assert spans[2].status.status_code.name == "ERROR"
    flat = repr([(s.name, s.attributes, s.status.description) for s in spans])
    assert "5511999" not in flat  # never the session id


async def test_no_spans_when_tracing_is_off(exporter: InMemorySpanExporter) -> None:
    set_tracing(False)
    async with open_store(StoreConfig.testing(), metrics=NullMetrics()) as store:
        await store.session("s").keys.get("session", ["1.0"])
    assert exporter.get_finished_spans() == ()
