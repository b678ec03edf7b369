"""The outbox worker: drains write-behind entries to the durable tier, in order per session.

Per session: claim the outbox (one worker at a time; a claim expires, so a dead worker's
entries are redelivered by another), read up to ``batch`` head entries, coalesce them (the
last write of each record wins), apply them in ONE durable transaction that also records the
batch's last sequence (so a redelivered batch is skipped, never applied twice or out of order),
then trim them. Failures: an unavailable durable tier is waited out (entries are never dropped
for an outage); any other error is counted against the head entry, which is retried alone and
moves to the dead-letter list after ``max_attempts``. Several workers may run at once, in this
process (started by the store) or in others (``baileys-store outbox worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from .._model import CredsRecord, KeyWrite, SessionAddr, coalesce
from ..contracts import DurableBackend, Outbox, OutboxEntry
from ..errors import FencedError, StoreError, UnavailableError
from ..resilience import Guard

if TYPE_CHECKING:
    from ._broker import BrokerLog

log = logging.getLogger("baileys_store.outbox")


class OutboxWorker:
    """Drains the outbox of every session in the ready index (see the module doc)."""

    def __init__(
        self,
        cache: Outbox,
        durable: DurableBackend,
        *,
        guard: Guard,
        batch: int = 256,
        max_attempts: int = 10,
        claim_timeout: float = 30.0,
        on_drained: Callable[[SessionAddr, int], None] = lambda addr, seq: None,
        on_idle: Callable[[], Awaitable[None]] | None = None,
        on_event: Callable[[str, int], None] = lambda event, n: None,
        broker: BrokerLog | None = None,
    ) -> None:
        self.worker_id = secrets.token_hex(8)
        self._cache, self._durable, self._guard = cache, durable, guard
        self._batch, self._max_attempts = batch, max_attempts
        self._claim_ms = int(claim_timeout * 1000)
        self._on_drained, self._on_idle, self._event = on_drained, on_idle, on_event
        self._broker = broker  # a broker outbox: its log is checked and trimmed per batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._grace = min(claim_timeout, 5.0)  # seconds a stop waits for the batch in flight
        self._claimed: set[SessionAddr] = set()  # claims to give back if stopped midway
        # One drain per session in this process: the loop and drain_outbox() share the worker
        # id, so without it both could claim (and ack) the same batch; entry -> (lock, users).
        self._draining: dict[SessionAddr, tuple[asyncio.Lock, list[int]]] = {}

    def start(self) -> None:
        """Run the drain loop in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop the loop (entries left stay in the outbox for the next worker)."""
        task, self._task = self._task, None
        if task is not None:
            # The flag, not only cancel(): a client library may swallow a cancellation that
            # lands inside one of its calls, and the loop must end all the same.
            # Graceful first: the batch in flight finishes (a cancelled durable transaction
            # could keep the session's row locked while its connection winds down).
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait({task}, timeout=self._grace)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for addr in list(self._claimed):  # a stopped worker must not hold sessions up
            with contextlib.suppress(StoreError):
                await self._release(addr)
        self._claimed.clear()

    def notify(self) -> None:
        """Wake the loop now (an entry was appended)."""
        self._wake.set()

    async def run(self, *, idle: float = 1.0) -> None:
        """Drain until cancelled; back off while the durable tier is down."""
        backoff = 0.05
        while not self._stopping:
            self._wake.clear()
            try:
                applied = await self.run_once()
                backoff = 0.05
            except UnavailableError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # a bug must not stop the drain for good
                log.exception("outbox worker round failed")
                await asyncio.sleep(1.0)
                continue
            if applied == 0:
                if self._on_idle is not None:
                    with contextlib.suppress(StoreError):
                        await self._on_idle()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await self._wake.wait()

    async def run_once(self, *, wait: float = 0.0) -> int:
        """One pass over the ready index; returns how many entries were applied.

        ``wait``: seconds to wait for a session another worker is draining (0: skip it).
        """
        if self._broker is not None:  # after a cache data loss: the broker's entries first
            await self._broker.maybe_recover()
        sessions = await self._guard("cache", "ready_sessions", self._cache.ready_sessions)
        applied = 0
        for addr in sessions:
            applied += await self.drain(addr, wait=wait)
        return applied

    async def barrier(self, extra: Sequence[SessionAddr], *, wait: float) -> int:
        """Drain every session with entries now (the ready index, plus ``extra``).

        Returns the entries applied here once each of those sessions has applied at least
        every entry appended before the call, including a batch this process's loop had
        claimed; :class:`UnavailableError` naming the sessions that did not within ``wait``
        seconds each (busy in another worker, a failing head entry, a tier down).
        """
        ready = await self._guard(
            "cache", "ready_sessions", lambda: self._cache.ready_sessions(limit=0)
        )
        sessions = list(dict.fromkeys([*ready, *extra]))
        applied, missed = 0, []
        for addr in sessions:
            try:
                target, _, _ = await self._guard(
                    "cache",
                    "outbox_counters",
                    lambda a=addr: (  # type: ignore[misc]
                        self._cache.outbox_counters(a)
                    ),
                )
                applied += await self.drain(addr, wait=wait, until=target)
                _, done, _ = await self._guard(
                    "cache",
                    "outbox_counters",
                    lambda a=addr: (  # type: ignore[misc]
                        self._cache.outbox_counters(a)
                    ),
                )
            except UnavailableError:
                missed.append(addr)
                continue
            if done < target:
                missed.append(addr)
        if missed:
            named = ", ".join(str(a) for a in missed[:5])
            raise UnavailableError(
                f"outbox not drained for {len(missed)} session(s) within {wait}s each: {named}"
                + (" ..." if len(missed) > 5 else "")
            )
        return applied

    async def drain(self, addr: SessionAddr, *, wait: float = 0.0, until: int = 0) -> int:
        """Drain one session's outbox; returns entries applied.

        ``wait``: seconds to wait for another worker's claim (or this process's loop) to end
        (used by ``clear``, ``delete`` and the barrier, which must see an empty outbox);
        :class:`UnavailableError` if it does not. Without ``wait`` a session this process
        is draining already is skipped. ``until``: stop once this sequence is applied
        (default: the last one appended when the drain began).
        """
        deadline = time.monotonic() + wait
        lock, users = self._draining.setdefault(addr, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            if lock.locked() and not wait:
                return 0
            try:
                async with asyncio.timeout(wait or None):
                    await lock.acquire()
            except TimeoutError:
                raise UnavailableError(f"session {addr}: outbox busy in this process") from None
            try:
                return await self._drain(addr, deadline, wait, until)
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._draining[addr]

    async def _drain(self, addr: SessionAddr, deadline: float, wait: float, until: int) -> int:
        applied = 0
        while True:
            # Tracked before the call: a stop that cancels it after Redis took the claim must
            # still give the claim back (releasing one we do not hold is a no-op).
            self._claimed.add(addr)
            claim = await self._guard(
                "cache",
                "claim",
                lambda: self._cache.claim(addr, self.worker_id, self._claim_ms, self._batch),
            )
            if claim is None:
                self._claimed.discard(addr)
                if time.monotonic() >= deadline:
                    if wait:
                        raise UnavailableError(f"session {addr}: outbox busy in another worker")
                    return applied
                await asyncio.sleep(0.02)
                continue
            if not claim.entries:
                await self._finish(addr, claim.applied)
                return applied
            # Bounded: what was appended when this drain began, so a session written without
            # pause neither keeps this drain (and its lock) forever nor starves the others.
            until = until or claim.appended
            entries = claim.entries if claim.attempts == 0 else claim.entries[:1]
            done = await self._apply(addr, entries)
            if done is None:  # claim lost to another worker: it carries on
                self._claimed.discard(addr)
                return applied
            if done < 0:  # the head entry failed: retried on a later round
                await self._release(addr)
                return applied
            applied += len(entries)
            if done and (self._stopping or 0 < until <= entries[-1].seq):
                await self._release(addr)  # stopping (the rest is the next worker's) or done
                return applied
            if done == 0:
                self._claimed.discard(addr)
                self._on_drained(addr, entries[-1].seq)
                await self._guard("cache", "unready", lambda: self._cache.unready(addr))
                return applied

    async def _release(self, addr: SessionAddr) -> None:
        """Give the claim on ``addr`` back, so no other worker waits for it to lapse."""
        await self._guard("cache", "release", lambda: self._cache.release(addr, self.worker_id))
        self._claimed.discard(addr)

    async def _settle(self, addr: SessionAddr, applied: int, *, drained: bool) -> None:
        """Trim the broker's log up to ``applied`` (a failure leaves it for a later drain)."""
        if self._broker is None:
            return
        try:
            await self._broker.settle(addr, applied, drained=drained)
        except StoreError:
            log.warning("could not trim the broker's outbox log", extra={"event": "broker_trim"})

    async def _finish(self, addr: SessionAddr, applied_seq: int) -> None:
        await self._guard(
            "cache", "ack", lambda: self._cache.ack(addr, self.worker_id, 0, applied_seq)
        )
        await self._settle(addr, applied_seq, drained=True)
        # The ack keeps the claim when the counters still say "pending" (an entry appended
        # meanwhile): give it back, or everyone else waits for it to expire.
        await self._release(addr)
        await self._guard("cache", "unready", lambda: self._cache.unready(addr))
        self._on_drained(addr, applied_seq)

    async def _apply_fenced(
        self,
        addr: SessionAddr,
        writes: list[KeyWrite],
        creds: CredsRecord | None,
        seq: int,
        fence: int,
    ) -> None:
        """Apply with the entries' fence: a late-landing older write of theirs is then rejected.

        Fenced means a newer lease holder's barrier already outranks them (and it wrote nothing
        durable since: it drains these entries first), so apply them unfenced.
        """
        try:
            await self._guard(
                "durable",
                "apply_batch",
                lambda: self._durable.apply_batch(
                    addr, writes, creds, seq=seq, fence=fence or None
                ),
            )
        except FencedError:
            await self._guard(
                "durable",
                "apply_batch",
                lambda: self._durable.apply_batch(addr, writes, creds, seq=seq),
            )

    async def _apply(self, addr: SessionAddr, entries: Sequence[OutboxEntry]) -> int | None:
        """Apply and trim a batch: entries left, None when the claim was lost, -1 on failure."""
        writes, creds = coalesce(entries)
        last = entries[-1].seq
        try:
            if self._broker is not None:
                # Entries the broker kept from before a cache data loss go first.
                await self._broker.before_apply(addr)
            await self._apply_fenced(addr, writes, creds, last, max(e.fence for e in entries))
        except UnavailableError:
            # Not the entry's fault: keep it, let the claim go so any worker retries later.
            self._event("retry", 1)
            with contextlib.suppress(StoreError):
                await self._release(addr)
            raise
        except StoreError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            outcome = await self._guard(
                "cache",
                "fail",
                lambda: self._cache.fail(addr, self.worker_id, reason, self._max_attempts),
            )
            if outcome is None:
                return None
            dead, seq = outcome
            self._event("retry", 1)
            if dead:
                self._event("dead_letter", 1)
                if self._broker is not None:
                    await self._dead(addr, entries, seq, reason)
                log.error(  # noqa: TRY400 - the error is kept with the entry; no traceback
                    "outbox entry moved to the dead letters",
                    extra={"event": "outbox_dead_letter", "seq": seq},
                )
                left = await self._guard(
                    "cache", "ack", lambda: self._cache.ack(addr, self.worker_id, 0, seq)
                )
                if left is not None:  # the dead entry leaves the broker's log too
                    await self._settle(addr, seq, drained=left == 0)
                return left
            return -1
        left = await self._guard(
            "cache", "ack", lambda: self._cache.ack(addr, self.worker_id, len(entries), last)
        )
        if left is not None:
            self._event("applied", len(entries))
            await self._settle(addr, last, drained=left == 0)
        return left

    async def _dead(
        self, addr: SessionAddr, entries: Sequence[OutboxEntry], seq: int, reason: str
    ) -> None:
        """Keep the dead entry in the broker's dead-letter stream too.

        Best effort: the cache's dead letters hold it and keep its values served.
        """
        assert self._broker is not None
        entry = next((e for e in entries if e.seq == seq), entries[0])
        try:
            await self._broker.dead(addr, entry, reason)
        except StoreError:
            log.warning("could not copy a dead letter to the broker", extra={"event": "broker_dlq"})
