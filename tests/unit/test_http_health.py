"""Health endpoints over real HTTP (stdlib server on a free port) and as an in-process ASGI app."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from baileys_store.errors import UnavailableError
from baileys_store.observability import HealthServer, StoreMetrics, asgi_app, serve
from baileys_store.results import StoreHealth, TierHealth


class Source:
    """Our own fake of the store's check(): a status, an exception, or a hang."""

    def __init__(self) -> None:
        self.status = "healthy"
        self.error: Exception | None = None
        self.delay = 0.0
        self.calls = 0

    async def check(self) -> StoreHealth:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        tier = TierHealth(
            backend="postgres",
            tier="durable",
            ok=self.status != "unhealthy",
            latency_ms=1.5,
            detail="",
        )
        return StoreHealth(
            status=self.status,
            tiers=(tier,),
            breakers={"durable": "closed"},
            outbox_sessions=None,
            outbox_lag_seconds=None,
            leases_held=2,
        )


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    StoreMetrics(reg).version_conflict()
    return reg


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
async def server(source: Source, registry: CollectorRegistry) -> AsyncIterator[HealthServer]:
    async with await serve(
        source, port=0, registry=registry, ready_timeout=0.3, read_timeout=0.5
    ) as srv:
        yield srv


async def raw(port: int, data: bytes, *, shut: bool = False) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if shut:
            writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


def get(port: int, path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_health_is_alive_without_calling_the_source(
    server: HealthServer, source: Source
) -> None:
    source.error = UnavailableError("database down")
    status, headers, body = await raw(server.port, get(server.port, "/health"))
    assert status == 200
    assert json.loads(body) == {"status": "alive"}
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert source.calls == 0


@pytest.mark.parametrize(
    ("state", "code"), [("healthy", 200), ("degraded", 200), ("unhealthy", 503)]
)
async def test_ready_follows_the_status(
    server: HealthServer, source: Source, state: str, code: int
) -> None:
    source.status = state
    status, _, body = await raw(server.port, get(server.port, "/ready?verbose=1"))
    assert status == code
    payload = json.loads(body)
    assert payload["status"] == state
    assert payload["tiers"][0] == {
        "backend": "postgres",
        "tier": "durable",
        "ok": state != "unhealthy",
        "latency_ms": 1.5,
        "detail": "",
    }
    assert payload["breakers"] == {"durable": "closed"}
    assert payload["leases_held"] == 2
    assert source.calls == 1


async def test_ready_is_503_when_check_raises_and_names_only_the_type(
    server: HealthServer, source: Source
) -> None:
    source.error = UnavailableError("postgresql://app:hunter2@db/auth session 5511 down")
    status, _, body = await raw(server.port, get(server.port, "/ready"))
    assert status == 503
    assert json.loads(body) == {"status": "unhealthy", "error": "UnavailableError"}
    assert b"hunter2" not in body
    assert b"5511" not in body


async def test_ready_is_503_on_timeout(server: HealthServer, source: Source) -> None:
    source.delay = 5.0
    started = time.monotonic()
    status, _, body = await raw(server.port, get(server.port, "/ready"))
    assert status == 503
    assert json.loads(body) == {"status": "unhealthy", "error": "timeout"}
    assert time.monotonic() - started < 2.0


async def test_metrics_exposes_the_registry(server: HealthServer) -> None:
    status, headers, body = await raw(server.port, get(server.port, "/metrics"))
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"baileys_store_version_conflicts_total 1.0" in body


async def test_head_has_headers_and_no_body(server: HealthServer) -> None:
    status, headers, body = await raw(server.port, get(server.port, "/health", "HEAD"))
    assert status == 200
    assert int(headers["content-length"]) == len(b'{"status":"alive"}')
    assert body == b""


async def test_unknown_path_404_and_other_method_405(server: HealthServer) -> None:
    status, _, _ = await raw(server.port, get(server.port, "/admin"))
    assert status == 404
    status, headers, _ = await raw(server.port, get(server.port, "/ready", "POST"))
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health\r\n\r\n",
        b"GET health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/2.0\r\n\r\n",
        b"get /health HTTP/1.1\r\n\r\n",
        b"GET /he\x00alth HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /h\xc3\xa9 HTTP/1.1\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400(server: HealthServer, data: bytes) -> None:
    status, headers, _ = await raw(server.port, data)
    assert status == 400
    assert headers["connection"] == "close"


async def test_oversized_request_gets_400(server: HealthServer) -> None:
    big = b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    status, _, _ = await raw(server.port, big)
    assert status == 400


async def test_truncated_request_gets_400(server: HealthServer) -> None:
    status, _, _ = await raw(server.port, b"GET /health HTTP/1.1\r\n", shut=True)
    assert status == 400


async def test_slow_client_is_cut_off(server: HealthServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\n")  # and never finishes the head
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply == b""  # closed without an answer after read_timeout
    assert 0.4 < time.monotonic() - started < 3.0
    status, _, _ = await raw(server.port, get(server.port, "/health"))
    assert status == 200  # and the server still serves


async def test_many_concurrent_requests(server: HealthServer) -> None:
    results = await asyncio.gather(
        *(raw(server.port, get(server.port, "/health")) for _ in range(50))
    )
    assert {r[0] for r in results} == {200}


async def test_a_standard_client_works(server: HealthServer) -> None:
    def fetch(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    assert await asyncio.to_thread(fetch, "/health") == (200, b'{"status":"alive"}')
    code, body = await asyncio.to_thread(fetch, "/ready")
    assert code == 200
    assert json.loads(body)["status"] == "healthy"
    assert (await asyncio.to_thread(fetch, "/nope"))[0] == 404


async def test_close_stops_listening_and_is_idempotent(
    source: Source, registry: CollectorRegistry
) -> None:
    srv = await serve(source, port=0, registry=registry, read_timeout=5.0)
    port = srv.port
    assert port > 0
    # An idle client connected while the server closes must not keep close() waiting.
    _, idle = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    await srv.close()
    assert time.monotonic() - started < 2.0
    await srv.close()
    idle.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# -- ASGI ---------------------------------------------------------------------------------


async def call_asgi(
    app: Any, method: str, path: str, root_path: str = ""
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": [],
    }
    await app(scope, receive, send)
    start, body = sent
    assert start["type"] == "http.response.start"
    assert body["type"] == "http.response.body"
    return start["status"], dict(start["headers"]), body["body"]


async def test_asgi_endpoints(source: Source, registry: CollectorRegistry) -> None:
    app = asgi_app(source, registry=registry, ready_timeout=0.3)
    status, headers, body = await call_asgi(app, "GET", "/health")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert source.calls == 0

    source.status = "degraded"
    status, _, body = await call_asgi(app, "GET", "/ready")
    assert (status, json.loads(body)["status"]) == (200, "degraded")
    source.status = "unhealthy"
    assert (await call_asgi(app, "GET", "/ready"))[0] == 503
    source.delay = 5.0
    status, _, body = await call_asgi(app, "GET", "/ready")
    assert (status, json.loads(body)) == (503, {"status": "unhealthy", "error": "timeout"})

    status, headers, body = await call_asgi(app, "GET", "/metrics")
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    assert b"baileys_store_version_conflicts_total 1.0" in body

    status, headers, body = await call_asgi(app, "HEAD", "/health")
    assert (status, body) == (200, b"")
    assert int(headers[b"content-length"]) > 0
    assert (await call_asgi(app, "GET", "/missing"))[0] == 404
    status, headers, _ = await call_asgi(app, "DELETE", "/health")
    assert (status, headers[b"allow"]) == (405, b"GET, HEAD")


async def test_asgi_mounted_under_a_prefix(source: Source, registry: CollectorRegistry) -> None:
    app = asgi_app(source, registry=registry)
    status, _, body = await call_asgi(app, "GET", "/ops/health", root_path="/ops")
    assert (status, json.loads(body)) == (200, {"status": "alive"})


async def test_asgi_lifespan_and_other_scopes(source: Source) -> None:
    app = asgi_app(source)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return inbox.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(ValueError, match="websocket"):
        await app({"type": "websocket"}, receive, send)
