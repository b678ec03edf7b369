"""The NATS JetStream outbox transport: a replicated log of write-behind entries.

Layout: stream ``<stream>`` (file storage, ``replicas`` from the URL, limits retention, no age
or size limit: an entry leaves only when it is known applied) on ``<prefix>.outbox.>``; one
subject per session, ``<prefix>.outbox.<namespace token>.<session token>`` (tokens: see
:mod:`._subjects`); stream ``<stream>_DLQ`` on ``<prefix>.dlq.>`` keeps dead letters.

Each entry is published with ``Nats-Msg-Id: <session tokens>.<outbox seq>`` (the session's
address and the entry's version), so a publish retried after a lost acknowledgement is stored
once (within the stream's two-minute duplicate window). :meth:`publish` returns only once the
stream acknowledged (``PubAck``): the caller acknowledges the write after that.

Every call is bounded (``ack_wait`` for a publish, the connection's request timeout for the
rest); a broker that does not answer raises :class:`~baileys_store.errors.UnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors as nerr
import nats.js.errors as jerr
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from ... import errors
from ..._model import SessionAddr
from ...contracts import OutboxTransport
from ...results import DeadLetter, OutboxEntry, TierHealth
from ._subjects import pack_entry, parse_tail, session_tail, unpack_entry
from ._url import NatsOptions, parse_nats_url

T = TypeVar("T")
log = logging.getLogger("baileys_store.outbox")


class _Missing(Exception):  # noqa: N818 - internal: "no such message", never shown to callers
    """The stream has no such message (an absent record, not a failure)."""


_DUP_WINDOW_S = 120.0
_SEEN = (nerr.Error, jerr.Error, OSError, asyncio.TimeoutError)


async def _quiet(exc: Exception) -> None:
    log.debug("nats: connection error (%s)", type(exc).__name__)


async def _reconnected() -> None:
    log.warning("nats: reconnected to the outbox broker", extra={"event": "broker_back"})


class NatsTransport(OutboxTransport):
    """The outbox transport over NATS JetStream (see the module doc).

    Args:
        url: The ``nats://`` / ``tls://`` outbox URL (see :mod:`._url`).
        timeout: Upper bound of any one call, seconds (the store's ``op_timeout``).
    """

    name = "nats"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.options: NatsOptions = parse_nats_url(url)
        self._timeout = timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        o = self.options
        self._outbox_head = f"{o.prefix}.outbox"
        self._dlq_head = f"{o.prefix}.dlq"

    def describe(self) -> str:
        """Servers and stream (no credentials)."""
        return self.options.describe()

    # -- connection ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create (or check) the two streams."""
        o = self.options
        scheme = "tls" if o.tls else "nats"
        servers = [f"{scheme}://{h}" for h in o.servers]
        kwargs: dict[str, Any] = {}
        if o.user is not None:
            kwargs["user"], kwargs["password"] = o.user, o.password or ""
        try:
            self._nc = await nats.connect(
                servers=servers,
                connect_timeout=o.connect_timeout,
                max_reconnect_attempts=-1,  # keep trying in the background: writes fail meanwhile
                reconnect_time_wait=0.2,
                allow_reconnect=True,
                error_cb=_quiet,  # the store reports failed calls; no traceback per retry
                disconnected_cb=self._disconnected,
                reconnected_cb=_reconnected,
                **kwargs,
            )
        except _SEEN as exc:
            raise errors.UnavailableError(
                f"nats: cannot connect to {o.describe()} ({type(exc).__name__})"
            ) from None
        self._js = self._nc.jetstream(timeout=min(self._timeout, 10.0))
        try:
            await self._ensure(o.stream, f"{self._outbox_head}.>")
            await self._ensure(o.dlq_stream, f"{self._dlq_head}.>")
        except BaseException:
            await self.close()
            raise

    async def _ensure(self, name: str, subject: str) -> None:
        js = self._jsc()
        config = StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.options.replicas,
            duplicate_window=_DUP_WINDOW_S,
            allow_direct=True,
        )
        try:
            info = await self._call("open", lambda: js.stream_info(name))
        except _Missing:
            await self._call("open", lambda: js.add_stream(config))
            return
        if list(info.config.subjects or []) != [subject]:
            raise errors.ConfigError(
                f"nats: stream {name} exists with other subjects; give this store its own "
                "?stream= and ?prefix="
            )
        if info.config.storage != StorageType.FILE:
            raise errors.ConfigError(f"nats: stream {name} exists with memory storage")

    async def _disconnected(self) -> None:
        if self._nc is not None:  # not our own close()
            log.warning("nats: disconnected from the outbox broker", extra={"event": "broker_down"})

    async def close(self) -> None:
        """Close the connection; idempotent."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                async with asyncio.timeout(2.0):
                    await nc.drain()
            except (*_SEEN, TimeoutError):
                await nc.close()

    def _jsc(self) -> JetStreamContext:
        if self._js is None:
            raise errors.UnavailableError("nats: the outbox transport is not open")
        return self._js

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` bounded, with NATS errors as store errors (a missing message: NotFound)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await fn()
        except jerr.NotFoundError:
            raise _Missing from None
        except TimeoutError:
            raise errors.UnavailableError(f"nats: {op} timed out") from None
        except _SEEN as exc:
            raise errors.UnavailableError(f"nats: {op} failed ({type(exc).__name__})") from None

    async def check(self) -> TierHealth:
        """One stream-info round trip; an outage gives ``ok=False``, never an exception."""
        start = time.perf_counter()
        try:
            js = self._jsc()
            info = await self._call("check", lambda: js.stream_info(self.options.stream))
        except Exception as exc:  # a health probe reports, never raises
            return TierHealth("nats", "outbox", False, 0.0, type(exc).__name__)
        ms = (time.perf_counter() - start) * 1000
        return TierHealth("nats", "outbox", True, ms, f"{info.state.messages} entries")

    # -- the log -------------------------------------------------------------------------------

    def _subject(self, addr: SessionAddr) -> str:
        return f"{self._outbox_head}.{session_tail(addr)}"

    async def publish(self, addr: SessionAddr, entry: OutboxEntry, epoch: str) -> int:
        """Store ``entry`` in the stream; returns its stream sequence once acknowledged."""
        js, subject = self._jsc(), self._subject(addr)
        # The session, the entry's sequence and what it is (creds: with their version).
        what = f"c{entry.creds.version}" if entry.creds is not None else "k"
        headers = {"Nats-Msg-Id": f"{session_tail(addr)}.{entry.seq}.{what}"}
        data = pack_entry(entry, epoch)
        wait = min(self.options.ack_wait, self._timeout)
        ack = await self._call(
            "publish", lambda: js.publish(subject, data, timeout=wait, headers=headers)
        )
        return int(ack.seq)

    async def head(self, addr: SessionAddr, after: int = 0) -> tuple[int, OutboxEntry, str] | None:
        """The session's first entry above stream sequence ``after``: ``(sseq, entry, epoch)``."""
        return await self._next(self.options.stream, self._subject(addr), after)

    async def last(self, addr: SessionAddr) -> tuple[int, OutboxEntry, str] | None:
        """The session's last entry in the stream, or ``None``."""
        js, subject = self._jsc(), self._subject(addr)
        try:
            msg = await self._call("read", lambda: js.get_msg(self.options.stream, subject=subject))
        except _Missing:
            return None
        entry, epoch = unpack_entry(msg.data or b"")
        return int(msg.seq or 0), entry, epoch

    async def _next(
        self, stream: str, subject: str, after: int
    ) -> tuple[int, OutboxEntry, str] | None:
        js = self._jsc()
        try:
            msg = await self._call(
                "read",
                lambda: js.get_msg(stream, seq=after + 1, subject=subject, next=True),
            )
        except _Missing:
            return None
        entry, epoch = unpack_entry(msg.data or b"")
        return int(msg.seq or 0), entry, epoch

    async def applied_upto(self, addr: SessionAddr, applied: int, limit: int = 512) -> int:
        """The last position of the session's leading entries with a sequence ``<= applied``.

        Read with one short-lived consumer (created, one fetch of up to ``limit`` entries,
        deleted): a few round trips whatever the count, instead of one read per entry. 0 when
        the first entry is newer (or of another epoch: see :meth:`head`'s caller).
        """
        js, subject, stream = self._jsc(), self._subject(addr), self.options.stream
        name = f"bs{secrets.token_hex(8)}"
        config = ConsumerConfig(
            name=name,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,  # removed by the server if this process dies first
            mem_storage=True,
            num_replicas=1,
        )
        info = await self._call("read", lambda: js.add_consumer(stream, config=config))
        # Exactly what the subject holds (up to limit): a fetch of more would wait for them.
        wanted = min(limit, int(info.num_pending or 0))
        upto = 0
        try:
            if not wanted:
                return 0
            sub = await self._call(
                "read", lambda: js.pull_subscribe_bind(consumer=name, stream=stream)
            )
            try:
                msgs = await self._call("read", lambda: sub.fetch(wanted, timeout=1.0))
            except errors.UnavailableError:
                msgs = []  # nothing came within the wait
            finally:
                with contextlib.suppress(*_SEEN, errors.StoreError):
                    await self._call("read", sub.unsubscribe)
            for msg in msgs:
                entry, _ = unpack_entry(msg.data)
                if entry.seq > applied:
                    break
                upto = int(msg.metadata.sequence.stream)
        finally:
            with contextlib.suppress(errors.StoreError, _Missing):
                await self._call("read", lambda: js.delete_consumer(stream, name))
        return upto

    async def remove(self, addr: SessionAddr, upto: int) -> None:
        """Remove the session's entries at stream sequences ``<= upto`` (they are applied)."""
        js, subject = self._jsc(), self._subject(addr)
        await self._call(
            "purge",
            lambda: js.purge_stream(self.options.stream, seq=upto + 1, subject=subject),
        )

    async def sessions(self) -> dict[SessionAddr, int]:
        """``{session: entries in the stream}`` for every session with entries."""
        js = self._jsc()
        info = await self._call(
            "sessions",
            lambda: js.stream_info(self.options.stream, subjects_filter=f"{self._outbox_head}.>"),
        )
        subjects = info.state.subjects or {}
        return {parse_tail(s, self._outbox_head): int(n) for s, n in subjects.items()}

    async def totals(self) -> tuple[int, int]:
        """``(entries in the outbox stream, dead letters in the DLQ stream)``."""
        js, o = self._jsc(), self.options
        main = await self._call("status", lambda: js.stream_info(o.stream))
        dlq = await self._call("status", lambda: js.stream_info(o.dlq_stream))
        return int(main.state.messages), int(dlq.state.messages)

    # -- dead letters --------------------------------------------------------------------------

    async def dead_letter(
        self, addr: SessionAddr, entry: OutboxEntry, error: str, epoch: str
    ) -> None:
        """Keep ``entry`` in the dead-letter stream (acknowledged before this returns)."""
        js = self._jsc()
        subject = f"{self._dlq_head}.{session_tail(addr)}"
        headers = {
            "Nats-Msg-Id": f"dlq.{session_tail(addr)}.{entry.seq}",
            "Bs-Error": error[:500].replace("\r", " ").replace("\n", " "),
        }
        data = pack_entry(entry, epoch)
        await self._call("dead_letter", lambda: js.publish(subject, data, headers=headers))

    async def dead_letters(self, addr: SessionAddr) -> list[DeadLetter]:
        """The session's dead letters in the DLQ stream, oldest first."""
        js, subject = self._jsc(), f"{self._dlq_head}.{session_tail(addr)}"
        out: list[DeadLetter] = []
        after = 0
        while True:
            try:
                msg = await self._call(
                    "dead_letters",
                    lambda a=after: js.get_msg(  # type: ignore[misc]
                        self.options.dlq_stream, seq=a + 1, subject=subject, next=True
                    ),
                )
            except _Missing:
                return out
            entry, _ = unpack_entry(msg.data or b"")
            error = str((msg.headers or {}).get("Bs-Error", ""))
            when = int(msg.time.timestamp() * 1000) if msg.time else entry.time_ms
            out.append(DeadLetter(entry, error, when))
            after = int(msg.seq or 0)

    async def forget_dead(self, addr: SessionAddr) -> None:
        """Delete the session's dead letters from the DLQ stream."""
        js, subject = self._jsc(), f"{self._dlq_head}.{session_tail(addr)}"
        await self._call("purge", lambda: js.purge_stream(self.options.dlq_stream, subject=subject))

    async def dlq_sessions(self) -> AsyncIterator[SessionAddr]:
        """Sessions with dead letters in the DLQ stream."""
        js = self._jsc()
        info = await self._call(
            "dlq",
            lambda: js.stream_info(self.options.dlq_stream, subjects_filter=f"{self._dlq_head}.>"),
        )
        for subject in sorted(info.state.subjects or {}):
            yield parse_tail(subject, self._dlq_head)
