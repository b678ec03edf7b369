"""OpenTelemetry spans through ``opentelemetry-api`` (the optional ``otel`` extra).

Tracing is on when ``opentelemetry`` is importable, unless turned off with
:func:`set_tracing`. When off, :func:`span` returns one shared no-op context manager: no
allocation, no import, a few tens of nanoseconds. The same happens while no tracer provider is
installed (OpenTelemetry's global is still its placeholder, and a provider was not passed to
:func:`set_tracing`): its no-op spans would cost microseconds per operation for nothing. Spans
start as soon as an application installs a provider.

Attributes follow the database semantic conventions: ``db.system``, ``db.operation.name``,
``db.namespace`` (the store namespace only, never a session id) and ``baileys_store.tier``. An
exception marks the span ERROR with the exception's type only: messages may name sessions.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["GATE", "TRACER_NAME", "set_tracing", "span", "tracing_enabled"]

TRACER_NAME = "baileys_store"
_NOOP: AbstractContextManager[None] = nullcontext()


def _otel_available() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # a parent package blocked or half-installed
        return False


_OTEL_AVAILABLE = _otel_available()
_enabled = _OTEL_AVAILABLE
_tracer: Tracer | None = None
_explicit = False  # a provider was given to set_tracing
_absent_until = 0.0  # monotonic time until which "no provider installed" is taken as known


class _Gate:
    """Whether :func:`span` may make real spans, as plain attributes a hot path reads.

    ``off_until``: a monotonic time before which :func:`span` is known to return the no-op (a
    caller may skip calling it); 0 when spans may be on. Kept by :func:`span` and
    :func:`set_tracing`, so a hot path pays one attribute read instead of a call.
    """

    __slots__ = ("off_until",)

    def __init__(self) -> None:
        self.off_until = 0.0


GATE = _Gate()


def set_tracing(enabled: bool, *, provider: TracerProvider | None = None) -> bool:
    """Turn tracing on or off; it can only be on when ``opentelemetry-api`` is installed.

    Args:
        enabled: Whether :func:`span` should create spans.
        provider: Tracer provider to use instead of the global one (tests, or an application
            that keeps its provider out of the global).

    Returns:
        Whether tracing is now on.
    """
    global _enabled, _tracer, _explicit, _absent_until  # noqa: PLW0603 - process-wide switch
    _enabled = enabled and _OTEL_AVAILABLE
    _absent_until = 0.0  # look for a global provider again now
    # Fetched again lazily, from the provider given or the global one at that time.
    _tracer = provider.get_tracer(TRACER_NAME) if _enabled and provider is not None else None
    _explicit = _tracer is not None
    GATE.off_until = 0.0 if _enabled else float("inf")
    return _enabled


def _no_provider() -> bool:
    """True while OpenTelemetry's global provider is its placeholder (no SDK installed).

    Looked up at most once a second (the lookup reads an environment variable): spans start
    within a second of an application installing its provider.
    """
    global _absent_until  # noqa: PLW0603 - a process-wide memo
    now = time.monotonic()
    if now < _absent_until:
        return True
    from opentelemetry import trace  # noqa: PLC0415 - optional; cached in sys.modules

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _absent_until = now + 1.0
        return True
    return False


def tracing_enabled() -> bool:
    """Whether :func:`span` creates real spans."""
    return _enabled


def _get_tracer() -> Tracer:
    global _tracer  # noqa: PLW0603 - cached after the first span
    if _tracer is None:
        from opentelemetry import trace  # noqa: PLC0415 - optional dependency

        # get_tracer returns a proxy that follows a provider installed later.
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A span named ``name`` around a block, or a shared no-op when tracing is off.

    Keyword arguments become attributes; ``None`` values are dropped. Python names map to the
    semantic-convention names: ``system`` -> ``db.system``, ``operation`` ->
    ``db.operation.name``, ``namespace`` -> ``db.namespace``, ``tier`` ->
    ``baileys_store.tier``; other names are used as given.
    """
    if not _enabled:
        GATE.off_until = float("inf")
        return _NOOP
    if not _explicit and _no_provider():
        GATE.off_until = _absent_until
        return _NOOP
    GATE.off_until = 0.0
    return _real_span(name, attributes)


_ALIASES = {
    "system": "db.system",
    "operation": "db.operation.name",
    "namespace": "db.namespace",
    "tier": "baileys_store.tier",
}


@contextmanager
def _real_span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - optional dependency

    attrs = {_ALIASES.get(k, k): v for k, v in attributes.items() if v is not None}
    # record_exception would store the message; we set the status and the type ourselves.
    with _get_tracer().start_as_current_span(
        name, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            kind = type(exc).__qualname__
            current.set_attribute("error.type", kind)
            current.set_status(Status(StatusCode.ERROR, kind))
            raise
