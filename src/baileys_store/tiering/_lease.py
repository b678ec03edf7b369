"""Session leases with fencing tokens, renewed in the background.

Written here rather than taken from redis-py (``Lock`` has no fencing and keeps its token per
thread, so asyncio tasks could release each other's lock). A lease is taken from a
:class:`~baileys_store.backends.base.LeaseBackend` (Redis, or the durable tier without Redis);
its token is then written to the durable tier as a barrier (``advance_fence``), so every write of
an older holder is rejected there from that moment, whatever that holder still believes.

Reads use the in-process L1 only while the lease was renewed recently (``valid_until``): a lease
cannot pass to another process before it expires, which is ``ttl`` after the last successful
renewal; a failed renewal stops L1 use at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .._model import FENCE_SHIFT, SessionAddr, lease_token_of
from ..contracts import DurableBackend, LeaseBackend
from ..errors import FencedError, LeaseHeldError, LeaseLostError, UnavailableError
from ..resilience import Guard

T = TypeVar("T")
log = logging.getLogger("baileys_store.lease")


@dataclass(slots=True)
class Lease:
    """A lease this process holds: its fencing token and until when L1 may be trusted."""

    token: int
    valid_until: float
    lost: bool = False
    checked: bool = False  # the engine looked for a previous holder's pending outbox entries
    writes: int = 0
    barrier: bool = True  # the durable tier recorded the token (False: deferred by an outage)

    def fence(self) -> int:
        """A fence for the next durable write: the token, then a counter of this term's writes.

        Every write carries a higher fence than the one before, so a write that lands late
        (its request was delayed past its deadline) is rejected instead of overwriting newer
        data; a new holder's token outranks every counter of the old one.
        """
        self.writes += 1
        return (self.token << FENCE_SHIFT) | self.writes

    def fresh(self) -> bool:
        """True while the lease is held and was renewed recently enough for L1 reads."""
        return not self.lost and time.monotonic() < self.valid_until


class LeaseManager:
    """Acquires, renews and releases this process's session leases."""

    def __init__(
        self,
        backend: LeaseBackend,
        durable: DurableBackend,
        *,
        tier: str,
        ttl: float,
        wait: float,
        guard: Guard,
        on_lost: Callable[[SessionAddr], None],
        on_event: Callable[[str], None] = lambda event: None,
    ) -> None:
        self.owner = secrets.token_hex(8)  # an id, not a secret: it only names this process
        self._backend, self._durable, self._tier = backend, durable, tier
        self._ttl, self._wait = ttl, wait
        self._guard, self._on_lost, self._event = guard, on_lost, on_event
        self.held: dict[SessionAddr, Lease] = {}
        self._elsewhere: dict[SessionAddr, float] = {}  # held by another process, until then
        # One acquisition per session at a time; the lock lives while any task waits on it
        # (dropping it earlier would let a third task start a second, token-bumping acquire).
        self._acquiring: dict[SessionAddr, tuple[asyncio.Lock, list[int]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop = asyncio.Event()

    @property
    def _ttl_ms(self) -> int:
        return int(self._ttl * 1000)

    def start(self) -> None:
        """Start the renewal task."""
        if self._task is None:
            self._stopping = False
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._renew_loop())

    async def stop_renewing(self) -> None:
        """Stop the renewal task (the leases then expire unless released)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True  # see OutboxWorker.stop: a swallowed cancel must not hang us
            self._stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Stop renewing and release every lease (best effort: they expire anyway)."""
        await self.stop_renewing()
        held, self.held = self.held, {}
        for addr, lease in held.items():
            if not lease.lost:
                with contextlib.suppress(Exception):
                    await self._call(
                        "release_lease",
                        lambda a=addr, t=lease.token: (  # type: ignore[misc]
                            self._backend.release_lease(a, self.owner, t)
                        ),
                    )

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self._guard(self._tier, op, fn)

    async def get(self, addr: SessionAddr, *, write: bool) -> Lease | None:
        """The session's lease, acquiring it if needed.

        For a read, ``None`` means "not ours" (held elsewhere, or the lease tier cannot be
        reached): the caller reads around the shared cache. For a write it raises instead:
        :class:`LeaseLostError` (once) when the lease was lost, :class:`LeaseHeldError` when
        another process keeps it for longer than ``lease_wait``, :class:`UnavailableError`.
        """
        lease = self.held.get(addr)
        if lease is not None and not lease.lost:
            return lease
        if lease is not None:  # lost: reads go around the cache; the next write is told, once
            if not write:
                return None
            del self.held[addr]
            raise LeaseLostError(
                f"session {addr}: this process lost its lease (token {lease.token})",
                token=lease.token,
                current=lease.token,
            )
        if not write and self._elsewhere.get(addr, 0.0) > time.monotonic():
            return None
        lock, users = self._acquiring.setdefault(addr, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                lease = self.held.get(addr)
                if lease is not None and not lease.lost:
                    return lease
                return await self._acquire(addr, write=write)
        except UnavailableError:
            if write:
                raise
            return None
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._acquiring[addr]

    async def _acquire(self, addr: SessionAddr, *, write: bool) -> Lease | None:
        deadline = time.monotonic() + (self._wait if write else 0.0)
        delay, floor = 0.02, 0
        for _ in range(1000):
            start = time.monotonic()
            token = await self._call(
                "acquire_lease",
                lambda f=floor: (  # type: ignore[misc]
                    self._backend.acquire_lease(addr, self.owner, self._ttl_ms, floor=f)
                ),
            )
            if token is None:
                if time.monotonic() >= deadline:
                    self._event("held_elsewhere")
                    self._elsewhere[addr] = time.monotonic() + min(self._ttl / 10, 1.0)
                    if write:
                        raise LeaseHeldError(f"session {addr} is leased by another process")
                    return None
                await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                delay = min(delay * 2, 0.5)
                continue
            try:
                await self._guard(
                    "durable",
                    "advance_fence",
                    lambda t=token: (  # type: ignore[misc]
                        self._durable.advance_fence(addr, t << FENCE_SHIFT)
                    ),
                )
            except FencedError as exc:  # the durable tier saw a higher token: ask for more
                floor = lease_token_of(exc.current)
                continue
            except UnavailableError:
                # The durable tier is down: our writes carry the token, which raises the fence
                # the moment they land, and each renewal retries the barrier. Until one of them
                # lands, a stale holder's write can still land durably (README: the window).
                log.warning(
                    "lease barrier deferred: durable tier unavailable",
                    extra={"event": "lease_barrier_deferred"},
                )
                barrier = False
            else:
                barrier = True
            self._elsewhere.pop(addr, None)
            lease = Lease(token, start + self._ttl * 2 / 3, barrier=barrier)
            self.held[addr] = lease
            self._event("acquired")
            return lease
        raise UnavailableError(f"session {addr}: could not obtain a lease token")

    async def release(self, addr: SessionAddr) -> bool:
        """Release the session's lease now; False when it was not held (or already lost)."""
        lease = self.held.pop(addr, None)
        if lease is None or lease.lost:
            return False
        self._on_lost(addr)  # another process may write it now: L1 must not keep its values
        ok = await self._call(
            "release_lease", lambda: self._backend.release_lease(addr, self.owner, lease.token)
        )
        self._event("released")
        return bool(ok)

    def mark_lost(self, addr: SessionAddr) -> None:
        """Record that the session's lease is gone (a fenced write proved it)."""
        lease = self.held.get(addr)
        if lease is not None and not lease.lost:
            lease.lost = True
            self._event("lost")
            self._on_lost(addr)

    async def renew_all(self) -> None:
        """Renew every held lease once (the loop calls this every third of the TTL)."""
        for addr, lease in list(self.held.items()):
            if lease.lost:
                continue
            start = time.monotonic()
            try:
                ok = await self._call(
                    "renew_lease",
                    lambda a=addr, t=lease.token: (  # type: ignore[misc]
                        self._backend.renew_lease(a, self.owner, t, self._ttl_ms)
                    ),
                )
            except Exception:  # unreachable: keep the token (fencing still protects), stop L1
                lease.valid_until = 0.0
                continue
            if ok:
                lease.valid_until = start + self._ttl * 2 / 3
                self._event("renewed")
                if not lease.barrier:
                    await self._retry_barrier(addr, lease)
            else:
                self.mark_lost(addr)

    async def _retry_barrier(self, addr: SessionAddr, lease: Lease) -> None:
        """Record a deferred barrier now that the lease tier answers; keep trying if it fails.

        The barrier is the term's lowest fence (``token << FENCE_SHIFT``), so it never
        outranks this term's own writes: a rejection naming our token means one of them landed
        first (barrier done); a higher token means another process holds the session now.
        """
        try:
            await self._guard(
                "durable",
                "advance_fence",
                lambda: self._durable.advance_fence(addr, lease.token << FENCE_SHIFT),
            )
        except FencedError as exc:
            if lease_token_of(exc.current) > lease.token:
                self.mark_lost(addr)
                return
        except Exception:  # still unavailable: the next renewal tries again
            return
        lease.barrier = True

    async def _renew_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ttl / 3):
                    await self._stop.wait()
            if self._stopping:
                return
            try:
                await self.renew_all()
            except Exception:  # never let the renewal task die
                log.exception("lease renewal round failed")
