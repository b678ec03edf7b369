"""The health endpoints as an ASGI application, for users who already run an ASGI server.

No framework: the app speaks ASGI 3 directly. Mount it under any prefix; routing uses the
path relative to the mount (``scope["path"]`` minus ``scope["root_path"]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry

from ._http import HealthEndpoints, HealthSource

__all__ = ["ASGIApp", "asgi_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_app(
    source: HealthSource,
    *,
    registry: CollectorRegistry | None = None,
    ready_timeout: float = 2.0,
) -> ASGIApp:
    """An ASGI app serving ``/health``, ``/ready`` and ``/metrics`` (see the ``_http`` module).

    Args:
        source: What ``/ready`` checks, usually the :class:`~baileys_store.AuthStore`.
        registry: What ``/metrics`` exposes; default the global registry.
        ready_timeout: Seconds ``/ready`` waits for ``source.check()``.

    Returns:
        The ASGI 3 callable. It also completes the ``lifespan`` protocol (doing nothing).
    """
    endpoints = HealthEndpoints(source, registry=registry, ready_timeout=ready_timeout)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        method = str(scope["method"]).upper()
        path = str(scope["path"])
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        resp = await endpoints.handle(method, path)
        headers = [
            (b"content-type", resp.content_type.encode("latin-1")),
            (b"content-length", str(len(resp.body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers),
        ]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else resp.body})

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
