"""Observability: Prometheus metrics, health endpoints (HTTP + ASGI), log redaction, tracing.

``prometheus-client`` is a core dependency; tracing needs the ``otel`` extra
(``opentelemetry-api``) and is a shared no-op without it.
"""

from ._asgi import asgi_app
from ._http import HealthServer, HealthSource, serve
from ._logging import RedactingFilter, install_redaction, log_event, logger
from ._metric_families import METRICS_DOC
from ._metrics import Metrics, NullMetrics, StoreMetrics
from ._tracing import set_tracing, span, tracing_enabled

__all__ = [
    "METRICS_DOC",
    "HealthServer",
    "HealthSource",
    "Metrics",
    "NullMetrics",
    "RedactingFilter",
    "StoreMetrics",
    "asgi_app",
    "install_redaction",
    "log_event",
    "logger",
    "serve",
    "set_tracing",
    "span",
    "tracing_enabled",
]
