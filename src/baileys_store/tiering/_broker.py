"""Write-behind over a broker (NATS JetStream): the broker keeps what the cache acknowledged.

With ``outbox="redis"`` an acknowledged write-behind write lives in Redis only (the documented
RPO: Redis's replication and persistence). With a broker outbox every write-behind write is
also published to the broker, and acknowledged only once the broker stored it, so losing Redis
(a node, ``FLUSHALL``, a restart without AOF) loses no acknowledged write.

Why the Redis outbox stays, as a mirror. The cache must never let a read fall through to the
durable tier's older value while an entry is pending, and the only way the Redis cache keeps a
key from expiring (and keeps a deleted key as a tombstone, and refuses to drop or take over a
session) is a pending entry in its own outbox: the write-behind scripts, unchanged. So a write
is: (1) the same ``wb_keys``/``wb_creds`` script as today (cache + Redis entry, one round
trip, which also assigns the entry's per-session sequence), then (2) the broker publish of the
same entry under that sequence (``Nats-Msg-Id`` = session + sequence, deduplicated), awaited
until the stream acknowledged it, then (3) the acknowledgement to the caller. A failed publish
fails the write (``UnavailableError``); its entry stays in the Redis mirror, so it may still be
applied, like any write whose outcome the caller did not learn.

Why the worker drains the Redis mirror, not a broker consumer. The mirror already gives what
ordering needs: one claim per session across every worker (one batch in flight per session),
batches applied with ``apply_batch`` at their last sequence, so a redelivered or older batch is
skipped and an older version never overwrites a newer one. A shared JetStream consumer instead
redelivers a message after later ones of the same session were delivered to other workers, and
per-session consumers do not scale to thousands of sessions. The broker is the durable log:
after the worker drained a session (every entry appended was applied), the broker's entries up
to the last one applied are removed (:meth:`BrokerLog.settle`: two reads and one purge per
drained session, not per write).

Recovery. Each broker entry carries the cache epoch it was written under (see ``_reset``). An
entry of another epoch was written before Redis lost its data, so the mirror may no longer have
it: :meth:`BrokerLog.recover` applies those, in order, each at its own sequence (skipped when
already applied), before the worker applies anything newer for the session (a newer batch
applied first would make the durable tier skip them). The worker checks a session's first
broker entry before each batch, a new lease holder checks it before its first read or write
(one broker read per lease), and every session in the broker is checked when the store opens
and after a reset is noticed (then the sessions ``_reset`` marked lost are cleared: every
acknowledged entry was in the broker).

RabbitMQ (aio-pika) is not here: this design needs, per session, the first and last entry
and a removal up to a position (a JetStream subject gives all three; a quorum queue gives
none: it can only be consumed in order and acked), so it would need a different recovery
(consume and re-apply a whole shard queue) and trimming; not the small addition issue 17 asks
for.

What this does not cover (see the README): while Redis is down, writes fail and reads of
pending sessions fail (as with the Redis outbox: the cache is the primary); right after a
Redis data loss, the sessions this process had pending are marked lost by ``_reset`` until the
next worker round's recovery clears them, and a process reading a session it does not hold the
lease of may read the durable tier before a recovery ran (the read path is not told).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from .._model import CredsRecord, KeyWrite, SessionAddr, coalesce
from ..contracts import DurableBackend, OutboxTransport, SharedCache
from ..errors import FencedError, StoreError, UnavailableError
from ..resilience import Guard
from ..results import OutboxEntry

log = logging.getLogger("baileys_store.outbox")

_RECOVER_BATCH = 256  # entries of an older epoch applied per durable transaction
_MAX_TRACKED = 10_000  # sessions whose published positions are remembered


async def _nothing() -> None:
    return None


class BrokerLog:
    """The broker side of write-behind (see the module doc)."""

    def __init__(
        self,
        transport: OutboxTransport,
        shared: SharedCache,
        durable: DurableBackend,
        *,
        guard: Guard,
        track_positions: bool = True,
        resets: Callable[[], int] = lambda: 0,
        rebinding: Callable[[], bool] = lambda: False,
        poll: Callable[[], Awaitable[None]] | None = None,
        on_recovered: Callable[[], None] = lambda: None,
    ) -> None:
        self.transport, self.shared, self.durable, self.guard = transport, shared, durable, guard
        self.recovered = 0  # entries of an older epoch applied by recovery (for tests, status)
        self.resets_seen = 0
        self._resets, self._rebinding, self._on_recovered = resets, rebinding, on_recovered
        self._poll = poll or _nothing
        # (seq, position) of the entries this process published, per session: lets the worker
        # in this process remove what it applied with one purge per batch (a worker elsewhere
        # settles a session once it is fully drained instead). Only a hint: bounded, and kept
        # only when this process runs a worker.
        self._track = track_positions
        self._positions: dict[SessionAddr, deque[tuple[int, int]]] = {}

    @property
    def epoch(self) -> str:
        """The cache epoch new entries are written under."""
        return self.shared.epoch or ""

    # -- the write path ------------------------------------------------------------------------

    async def publish_keys(
        self,
        addr: SessionAddr,
        seq: int,
        writes: Sequence[KeyWrite],
        token: int | None,
        fence: int | None,
    ) -> None:
        """Publish a key-write entry the cache appended as ``seq``; returns once stored."""
        entry = OutboxEntry(
            seq, "k", token or 0, int(time.time() * 1000), writes=tuple(writes), fence=fence or 0
        )
        self._note(addr, seq, await self._publish(addr, entry))

    async def _publish(self, addr: SessionAddr, entry: OutboxEntry) -> int:
        """Publish through the ``broker`` breaker: a broker down fails writes at once."""
        epoch = self.epoch
        return await self.guard(
            "broker", "publish", lambda: self.transport.publish(addr, entry, epoch)
        )

    def _note(self, addr: SessionAddr, seq: int, position: int) -> None:
        if not self._track:
            return
        known = self._positions.get(addr)
        if known is None:
            if len(self._positions) >= _MAX_TRACKED:
                self._positions.clear()  # sessions drained elsewhere: start over
            known = self._positions[addr] = deque(maxlen=1024)
        known.append((seq, position))

    async def publish_creds(
        self,
        addr: SessionAddr,
        seq: int,
        record: CredsRecord,
        token: int | None,
        fence: int | None,
    ) -> None:
        """Publish a creds entry (``seq`` 0: a retried save the cache had taken already)."""
        if seq == 0:
            # The cache took this exact save before (its earlier publish may have failed):
            # publish it again at the last sequence appended, where it is the newest creds.
            seq, _, _ = await self.guard(
                "cache", "outbox_counters", lambda: self.shared.outbox.outbox_counters(addr)
            )
        entry = OutboxEntry(
            seq, "c", token or 0, int(time.time() * 1000), creds=record, fence=fence or 0
        )
        self._note(addr, seq, await self._publish(addr, entry))

    # -- the worker ----------------------------------------------------------------------------

    async def before_apply(self, addr: SessionAddr) -> None:
        """Apply the session's broker entries of an older epoch before anything newer.

        The cache's epoch is read first: entries the mirror got after a data loss nobody has
        noticed yet must not be applied before the lost ones (their sequences are higher, so
        the durable tier would then skip the lost ones), and "older" needs the new epoch.
        """
        await self._poll()
        if self._rebinding():
            raise UnavailableError("the cache lost its data and is not bound again yet")
        head = await self.transport.head(addr)
        if head is not None and head[2] != self.epoch:
            await self.recover(addr)

    async def settle(self, addr: SessionAddr, applied: int, *, drained: bool) -> None:
        """The mirror applied the session up to ``applied``: drop those entries from the broker.

        With the positions this process published at: one purge. Otherwise, once the session
        is ``drained``, a head and a last read (the last entry is applied: purge up to it); while
        entries are still pending, a head read and a short consumer read of the leading entries
        (:meth:`OutboxTransport.applied_upto`), so a session written without pause is trimmed
        too.
        """
        known = self._positions.get(addr)
        upto = 0
        while known and known[0][0] <= applied:
            upto = max(upto, known.popleft()[1])
        if known is not None and not known:
            del self._positions[addr]
        if upto:
            await self.transport.remove(addr, upto)
            if not drained:
                return
        elif not drained:
            # Published elsewhere: find the applied entries' end with one short read.
            head = await self.transport.head(addr)
            if head is None or head[1].seq > applied:
                return
            if head[2] != self.epoch:
                await self.recover(addr)
                return
            upto = await self.transport.applied_upto(addr, applied)
            if upto:
                await self.transport.remove(addr, upto)
            return
        head = await self.transport.head(addr)
        if head is None:
            return
        if head[2] != self.epoch:
            await self.recover(addr)
            return
        last = await self.transport.last(addr)
        if last is not None and last[1].seq <= applied:
            await self.transport.remove(addr, last[0])
        # else: an entry came in since the drain; the next drain settles it

    async def recover(self, addr: SessionAddr) -> int:
        """Apply the session's broker entries written under an older cache epoch, in order.

        Each batch is applied at its last sequence, so entries the durable tier has already
        are skipped; entries of the current epoch are left to the mirror. Returns how many
        entries were applied (or found applied).
        """
        done, position = 0, 0
        while True:
            batch: list[OutboxEntry] = []
            last_pos = position
            while len(batch) < _RECOVER_BATCH:
                found = await self.transport.head(addr, position)
                if found is None or found[2] == self.epoch:
                    break
                position, entry, _ = found
                batch.append(entry)
                last_pos = position
            if not batch:
                if last_pos:
                    await self.transport.remove(addr, last_pos)
                return done
            await self._apply(addr, batch)
            await self.transport.remove(addr, last_pos)
            done += len(batch)
            self.recovered += len(batch)
            if len(batch) < _RECOVER_BATCH:
                return done

    async def _apply(self, addr: SessionAddr, batch: list[OutboxEntry]) -> None:
        writes, creds = coalesce(batch)
        seq, fence = batch[-1].seq, max(e.fence for e in batch)
        try:
            await self.guard(
                "durable",
                "apply_batch",
                lambda: self.durable.apply_batch(addr, writes, creds, seq=seq, fence=fence or None),
            )
        except FencedError:  # a newer holder's barrier outranks them: apply unfenced
            await self.guard(
                "durable",
                "apply_batch",
                lambda: self.durable.apply_batch(addr, writes, creds, seq=seq),
            )

    async def recover_all(self) -> int:
        """Recover every session the broker holds entries of an older epoch for.

        Raises the first error after trying every session (so a caller retries the pass).
        """
        total, failed = 0, None
        for addr in await self.transport.sessions():
            try:
                head = await self.transport.head(addr)
                if head is not None and head[2] != self.epoch:
                    total += await self.recover(addr)
            except StoreError as exc:
                failed = failed or exc
        if total:
            log.warning(
                "outbox recovery applied broker entries the cache had lost",
                extra={"event": "outbox_recovered", "entries": total},
            )
        if failed is not None:
            raise failed
        return total

    async def maybe_recover(self) -> None:
        """After a cache data loss was noticed: recover, then lift the sessions' lost marks.

        Every acknowledged entry is in the broker until applied, so once a full pass after the
        reset succeeded, the durable tier has every acknowledged write: nothing is lost.
        """
        resets = self._resets()
        if resets == self.resets_seen or self._rebinding():
            return  # nothing new, or the cache is not bound again yet (the old epoch is current)
        await self.recover_all()
        self.resets_seen = resets
        self._on_recovered()

    async def forget(self, addr: SessionAddr) -> None:
        """Remove every broker entry and dead letter of a session being cleared or deleted.

        Called after its outbox was drained (the mirror applied everything). Entries of an
        older epoch are applied first, so a wipe never skips an acknowledged write before it.
        """
        await self.before_apply(addr)
        last = await self.guard("broker", "read", lambda: self.transport.last(addr))
        if last is not None:
            await self.guard("broker", "purge", lambda: self.transport.remove(addr, last[0]))
        await self.guard("broker", "purge", lambda: self.transport.forget_dead(addr))
        self._positions.pop(addr, None)

    async def dead(self, addr: SessionAddr, entry: OutboxEntry, error: str) -> None:
        """Keep a dead-lettered entry in the broker's dead-letter stream too."""
        await self.transport.dead_letter(addr, entry, error, self.epoch)
