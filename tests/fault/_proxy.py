"""A TCP fault proxy for the fault suite: pass, latency, blackhole, reset (RST) and refuse.

No Toxiproxy server is installable on the test machines, so this is the stand-in. It runs its own
event loop in its own thread: it works whatever loop the test uses, and keeps forwarding (or
stalling) while the test's loop is blocked. Modes are switched from any thread and apply at once
to the connections already open:

- ``pass``: forward both ways.
- ``latency``: every chunk is delivered ``seconds`` after it arrived, in order, both ways.
- ``blackhole``: connections are accepted and read, nothing is forwarded either way, so clients
  hang until their own timeouts. What was read is held, not dropped: when the mode changes it is
  delivered in order, like TCP retransmitting after a partition heals (dropping it would corrupt
  the protocol streams of the connections that survive). Switch through ``reset`` to cut them.
- ``reset``: every open connection is closed with an RST (``SO_LINGER`` 0) on both sides (so the
  server sees it die too); new connections are accepted and reset at once.
- ``refuse``: the listener is closed (connection refused) and open connections are reset, as when
  the server's host is gone. The port is kept: ``set_pass()`` listens on it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit

MODES = ("pass", "latency", "blackhole", "reset", "refuse")
_CHUNK = 65536


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port``; modes switch from any thread.

    Attributes:
        port: The port it listens on (chosen at ``start()``, kept across ``refuse``).
        mode: The current mode.
        connections: Connections open now.
        total: Connections accepted so far (reset and blackholed ones included).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode = "pass"
        self.connections = 0
        self.total = 0
        self._delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"fault-proxy-{upstream_port}"
        )
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._changed = asyncio.Event()  # set whenever the mode changes; blackholed writers wait

    def start(self) -> FaultProxy:
        """Listen on a free port and start forwarding."""
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the thread (idempotent)."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url_for(self, url: str) -> str:
        """``url`` (redis://, mongodb://, postgresql://...) with its host:port set to the proxy's.

        User, password, path and query are kept.
        """
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = (user + "@" if user else "") + f"127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def set_pass(self) -> None:
        """Forward everything (listening again after ``refuse``)."""
        self._set("pass")

    def set_latency(self, seconds: float) -> None:
        """Deliver every chunk ``seconds`` after it arrived, both ways, in order."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._set("latency", seconds)

    def set_blackhole(self) -> None:
        """Accept and read, forward nothing (held data is delivered when the mode changes)."""
        self._set("blackhole")

    def set_reset(self) -> None:
        """RST every open connection and every new one."""
        self._set("reset")

    def set_refuse(self) -> None:
        """Stop listening (connection refused) and RST the open connections."""
        self._set("refuse")

    @contextlib.contextmanager
    def fault(self, mode: str, *, seconds: float = 0.0) -> Iterator[FaultProxy]:
        """``mode`` for the ``with`` block (``seconds`` is the latency), then ``pass`` again."""
        self._set(mode, seconds)
        try:
            yield self
        finally:
            self.set_pass()

    def _set(self, mode: str, delay: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; one of {MODES}")
        self._call(self._apply(mode, delay))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _apply(self, mode: str, delay: float) -> None:
        self.mode, self._delay = mode, delay
        self._changed.set()
        self._changed = asyncio.Event()
        if mode in ("reset", "refuse"):
            for conn in list(self._conns):
                conn.reset()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._apply("refuse", 0.0)
        # Let the reset connections' tasks finish, so none is destroyed pending with the loop.
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.total += 1
        if self.mode in ("reset", "refuse"):
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(writer)  # upstream down: the client sees its connection die, as it would
            return
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        self.connections += 1
        try:
            pipes = [
                asyncio.ensure_future(self._pipe(reader, up_writer)),
                asyncio.ensure_future(self._pipe(up_reader, writer)),
            ]
            # One side finished (EOF, error, reset): the connection is over for both.
            _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            conn.close()
        finally:
            self._conns.discard(conn)
            self.connections -= 1

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy ``src`` to ``dst`` until EOF or an error on either side."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            try:
                while data := await src.read(_CHUNK):
                    due = self._loop.time() + (self._delay if self.mode == "latency" else 0.0)
                    queue.put_nowait((due, data))
            finally:
                queue.put_nowait((0.0, b""))  # EOF (or a dead source): the sender stops there

        reader = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                while self.mode == "blackhole":
                    await self._changed.wait()
                if (wait := due - self._loop.time()) > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()  # raises once dst is reset or closed
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


class _Conn:
    """Both halves of one proxied connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.sides = (client, upstream)

    def reset(self) -> None:
        for side in self.sides:
            _rst(side)

    def close(self) -> None:
        for side in self.sides:
            side.transport.close()  # graceful: flushes what is still buffered


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: ``SO_LINGER`` on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
