"""A TCP fault proxy in its own thread: pass, latency, blackhole, reset (RST), refuse.

No Toxiproxy server is installable here; this is the ~100-line stand-in. It runs its own event
loop in a thread, so it keeps forwarding (or stalling) whatever the test's loop is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; switch modes from any thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode, self.delay = "pass", 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> FaultProxy:
        """Listen on a free port and start forwarding."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(0), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close everything and end the thread."""
        asyncio.run_coroutine_threadsafe(self._close_all(listen=True), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url_for(self, url: str) -> str:
        """``url`` with its host:port replaced by the proxy's."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = (user + "@" if user else "") + f"127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def set(self, mode: str, delay: float = 0.0) -> None:
        """``pass``, ``latency`` (with ``delay`` s), ``blackhole``, ``reset`` or ``refuse``."""
        self.mode, self.delay = mode, delay
        if mode in ("reset", "refuse"):
            asyncio.run_coroutine_threadsafe(
                self._close_all(listen=mode == "refuse"), self._loop
            ).result(10)
        elif self._server is None:
            asyncio.run_coroutine_threadsafe(self._listen(self.port), self._loop).result(10)

    @contextlib.contextmanager
    def fault(self, mode: str, delay: float = 0.0) -> Iterator[None]:
        """The fault for the ``with`` block, then ``pass`` again."""
        self.set(mode, delay)
        try:
            yield
        finally:
            self.set("pass")

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self, *, listen: bool) -> None:
        if listen and self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            with contextlib.suppress(OSError):  # RST, not FIN: SO_LINGER 0
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode in ("reset", "refuse"):
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer),
                             return_exceptions=True)  # fmt: skip
        for w in (writer, up_w):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            while self.mode == "blackhole":  # noqa: ASYNC110 - the mode is set from another thread
                await asyncio.sleep(0.01)
            if self.mode == "latency" and self.delay:
                await asyncio.sleep(self.delay)
            dst.write(data)
            await dst.drain()
