"""Health endpoints: ``/health``, ``/ready``, ``/metrics`` over a tiny stdlib asyncio server.

Why not uvicorn: embedding it takes over the host's signal handling; a library should not. Users
with their own ASGI server mount :func:`~baileys_store.observability.asgi_app` instead; both
share :class:`HealthEndpoints`.

- ``GET /health``: liveness. 200 ``{"status": "alive"}`` whenever the event loop answers; it
  never touches a backend, so a database outage does not get pods restarted.
- ``GET /ready``: readiness. Calls ``source.check()`` with a timeout; 200 when healthy or
  degraded, 503 when unhealthy, when the check fails (body names the exception type only) or
  when it times out.
- ``GET /metrics``: Prometheus text format of the registry.

Other paths answer 404, other methods 405; ``HEAD`` is allowed. The server reads one request
head of at most :data:`MAX_HEAD` bytes within ``read_timeout`` seconds, answers with
``Connection: close`` and closes; a malformed request gets 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from ..results import StoreHealth

__all__ = ["HealthEndpoints", "HealthServer", "HealthSource", "Response", "serve"]

log = logging.getLogger("baileys_store.http")

MAX_HEAD = 8192  # bytes of request line + headers accepted
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
JSON_CONTENT_TYPE = "application/json"
READY_STATUSES = frozenset({"healthy", "degraded"})
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HealthSource(Protocol):
    """Anything with an async ``check()`` returning a :class:`~baileys_store.StoreHealth`.

    :class:`~baileys_store.AuthStore` is one; ``status`` is ``healthy``, ``degraded`` or
    ``unhealthy``.
    """

    async def check(self) -> StoreHealth:
        """Probe the tiers and aggregate."""


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer, independent of the server that sends it."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def reason(self) -> str:
        """The status line's reason phrase."""
        return _REASONS.get(self.status, "")


def _json(status: int, payload: Any) -> Response:
    # default=str: a field added later with a non-JSON type must not break readiness.
    body = json.dumps(payload, default=str, separators=(",", ":")).encode()
    return Response(status, JSON_CONTENT_TYPE, body)


def _health_payload(result: StoreHealth) -> tuple[str, Any]:
    return result.status, dataclasses.asdict(result)


class HealthEndpoints:
    """The request handling shared by the asyncio server and the ASGI app.

    Args:
        source: What ``/ready`` asks.
        registry: What ``/metrics`` exposes; default the global registry.
        ready_timeout: Seconds ``/ready`` waits for ``source.check()``.
    """

    __slots__ = ("ready_timeout", "registry", "source")

    def __init__(
        self,
        source: HealthSource,
        *,
        registry: CollectorRegistry | None = None,
        ready_timeout: float = 2.0,
    ) -> None:
        self.source = source
        self.registry = REGISTRY if registry is None else registry
        self.ready_timeout = ready_timeout

    async def handle(self, method: str, path: str) -> Response:
        """Answer ``method path`` (path without query string). ``HEAD`` bodies are the caller's."""
        route = {"/health": self._health, "/ready": self._ready, "/metrics": self._metrics}
        handler = route.get(path)
        if handler is None:
            return _json(404, {"error": "not found"})
        if method not in {"GET", "HEAD"}:
            resp = _json(405, {"error": "method not allowed"})
            return dataclasses.replace(resp, headers=(("Allow", "GET, HEAD"),))
        try:
            return await handler()
        except Exception as exc:  # e.g. a broken custom collector: answer, do not crash
            log.warning("health endpoint %s failed: %s", path, type(exc).__name__)
            return _json(500, {"error": type(exc).__name__})

    async def _health(self) -> Response:
        return _json(200, {"status": "alive"})

    async def _ready(self) -> Response:
        try:
            async with asyncio.timeout(self.ready_timeout):
                result = await self.source.check()
        except TimeoutError:
            return _json(503, {"status": "unhealthy", "error": "timeout"})
        except Exception as exc:  # a failing check means "not ready", never a crashed server
            # The type only: messages may name sessions or hosts.
            log.warning("readiness check failed: %s", type(exc).__name__)
            return _json(503, {"status": "unhealthy", "error": type(exc).__name__})
        status, payload = _health_payload(result)
        return _json(200 if status in READY_STATUSES else 503, payload)

    async def _metrics(self) -> Response:
        return Response(200, METRICS_CONTENT_TYPE, generate_latest(self.registry))


def _parse_head(head: bytes) -> tuple[str, str] | None:
    """``(method, path)`` of a request head, or None when it is not valid HTTP/1.x."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    request_line, *header_lines = text.removesuffix("\r\n\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if not method.isalpha() or not method.isupper() or version not in {"HTTP/1.0", "HTTP/1.1"}:
        return None
    if not target.startswith("/") or any(c <= " " or c == "\x7f" for c in target):
        return None
    if any(":" not in line or line[0] in " \t" for line in header_lines):
        return None  # header without a colon, or obsolete line folding
    return method, target.partition("?")[0]


def _encode(resp: Response, *, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status} {resp.reason}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in resp.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + resp.body


_BAD_REQUEST = _json(400, {"error": "bad request"})


class HealthServer:
    """A started health server; ``close()`` (or leaving ``async with``) stops it.

    Attributes:
        port: The port actually bound (useful with ``port=0``).
        host: The address bound.
    """

    __slots__ = ("_clients", "_endpoints", "_read_timeout", "_server", "host", "port")

    def __init__(self, endpoints: HealthEndpoints, *, read_timeout: float) -> None:
        self._endpoints = endpoints
        self._read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._exchange(reader, writer)
        except (OSError, TimeoutError):
            pass  # the client went away or was too slow: nothing to answer
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self._read_timeout):
                    await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self._read_timeout):  # bounds a slow (or silent) client
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
                head = b""  # too large, or the client stopped mid-request
        parsed = _parse_head(head) if head else None
        if parsed is None:
            resp, head_only = _BAD_REQUEST, False
        else:
            method, path = parsed
            resp, head_only = await self._endpoints.handle(method, path), method == "HEAD"
        writer.write(_encode(resp, head_only=head_only))
        async with asyncio.timeout(self._read_timeout):  # a client that does not read
            await writer.drain()

    async def close(self) -> None:
        """Stop listening, end open connections and wait for them; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    source: HealthSource,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    registry: CollectorRegistry | None = None,
    ready_timeout: float = 2.0,
    read_timeout: float = 5.0,
) -> HealthServer:
    """Start the health server on ``host:port`` (``port=0``: any free port).

    Args:
        source: What ``/ready`` checks, usually the :class:`~baileys_store.AuthStore`.
        host: Address to bind; the default is local only.
        port: Port to bind.
        registry: What ``/metrics`` exposes; default the global registry.
        ready_timeout: Seconds ``/ready`` waits for ``source.check()``.
        read_timeout: Seconds a client has to send its request (and to read the answer).

    Returns:
        The started server; use ``async with`` or call ``close()``.
    """
    server = HealthServer(
        HealthEndpoints(source, registry=registry, ready_timeout=ready_timeout),
        read_timeout=read_timeout,
    )
    await server._start(host, port)  # the second half of construction
    return server
