"""span(): real spans with the right names and attributes when on; nothing at all when off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from baileys_store.errors import UnavailableError
from baileys_store.observability import _tracing, set_tracing, span, tracing_enabled


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    before = tracing_enabled()
    assert set_tracing(True, provider=provider)
    yield exp
    set_tracing(before)
    provider.shutdown()


def test_span_names_and_attributes(exporter: InMemorySpanExporter) -> None:
    with span(
        "baileys_store.get_keys",
        system="postgresql",
        operation="get_keys",
        namespace="clinic-1",
        tier="durable",
        custom=3,
        skipped=None,
    ) as current:
        assert current.is_recording()
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "baileys_store.get_keys"
    assert dict(finished.attributes or {}) == {
        "db.system": "postgresql",
        "db.operation.name": "get_keys",
        "db.namespace": "clinic-1",
        "baileys_store.tier": "durable",
        "custom": 3,
    }
    assert finished.status.status_code is StatusCode.UNSET
    assert finished.instrumentation_scope is not None
    assert finished.instrumentation_scope.name == "baileys_store"


def test_nested_spans_have_parents(exporter: InMemorySpanExporter) -> None:
    with span("outer", tier="store"), span("inner", tier="cache"):
        pass
    inner, outer = exporter.get_finished_spans()
    assert (inner.name, outer.name) == ("inner", "outer")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id


def test_error_records_type_only(exporter: InMemorySpanExporter) -> None:
    secretish = "session clinic-1/5511999990000 at db.internal:5432"
    with pytest.raises(UnavailableError), span("baileys_store.save_creds", tier="durable"):
        raise UnavailableError(secretish)
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "UnavailableError"
    assert (finished.attributes or {})["error.type"] == "UnavailableError"
    assert not finished.events  # no recorded exception event carrying the message
    assert "5511" not in repr(finished.to_json())


def test_disabled_creates_no_span(exporter: InMemorySpanExporter) -> None:
    assert not set_tracing(False)
    assert not tracing_enabled()
    first = span("a", tier="durable")
    second = span("b")
    assert first is second  # one shared no-op object
    with first as value:
        assert value is None
    with pytest.raises(ValueError), span("c"):
        raise ValueError("passes through")
    assert exporter.get_finished_spans() == ()


def test_cannot_enable_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    before = tracing_enabled()
    monkeypatch.setattr(_tracing, "_OTEL_AVAILABLE", False)
    try:
        assert set_tracing(True) is False
        assert span("x") is span("y")
    finally:
        monkeypatch.undo()
        set_tracing(before)


@pytest.mark.parametrize(("blocked", "expected"), [(False, "True"), (True, "False")])
def test_automatic_check_at_import(blocked: bool, expected: str) -> None:
    # A fresh interpreter: on when opentelemetry imports, off (and no crash) when it does not.
    block = "import sys; sys.modules['opentelemetry'] = None; " if blocked else ""
    code = (
        block + "from baileys_store.observability import span, tracing_enabled; "
        "span('x').__enter__(); print(tracing_enabled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == expected


def test_no_spans_until_a_provider_is_installed() -> None:
    # A fresh interpreter: OpenTelemetry's global provider can be set only once per process.
    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from baileys_store.observability import span, tracing_enabled
assert tracing_enabled()
assert span("a") is span("b")  # the placeholder provider: the shared no-op, no cost
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
import time; time.sleep(1.1)  # "no provider" is remembered for up to a second
with span("baileys_store.get", tier="durable"):
    pass
print([s.name for s in exporter.get_finished_spans()])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "['baileys_store.get']"
