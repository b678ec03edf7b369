"""An invariant checker for the fault suite: a model of what clients were told.

Every write is a :class:`WriteTicket` (``begin_write``, then ``ack`` or ``fail``); every read is
checked against the history when it ends. Time is a logical clock (one tick per event), so the
model is exact for clients sharing one event loop (it is not thread-safe).

For a key (session, type, id) and a read that began at tick S and ended at tick E, let L be the
write of that key acknowledged last before S. The read may return:

- L's value (absent when L deleted the key, or when no write was acknowledged before S), or
- the value of a write W that began before E and did not end (ack or failure) before L began:
  W was still in flight, concurrent with L, or failed after L began, so it may be ordered after L.

Anything else is a *stale read*: older than the last acknowledged write, or a value nobody wrote.
A failed write that ended before L began is no longer allowed: the store must not let it land
after a write begun later (its fences reject late-landing writes). The final state is checked
the same way with S = E = the end (``lost_writes``). Non-``None`` values must be unique per key
(use a counter) so a value names its write and "older" is defined by the writes' order.

An *out-of-order* read is a reader seeing a key's value older than one it already read whose
write was acknowledged before the new read began.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

Key = tuple[str, str, str]  # (session, type, id)
Writes = dict[str, dict[str, object | None]]


@dataclass(eq=False)
class WriteTicket:
    """One ``keys.set`` call as the checker saw it."""

    session: str
    writes: Writes
    begun: int
    ended: int | None = None
    acked: bool = False


@dataclass(frozen=True)
class LostWrite:
    """A key whose final value is neither its last acknowledged one nor a later unknown one."""

    key: Key
    expected: object | None
    found: object | None


@dataclass
class _History:
    key: Key
    tickets: list[WriteTicket] = field(default_factory=list)  # in begin order
    by_value: dict[Hashable, WriteTicket] = field(default_factory=dict)
    last_ack: WriteTicket | None = None  # the acknowledged write with the greatest ``ended``


class Checker:
    """What many concurrent clients were told, to check reads and the final state against."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self._keys: dict[Key, _History] = {}
        self._seen: dict[tuple[Hashable, Key], WriteTicket] = {}  # reader's newest read write
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # failed writes by exception type
        self.anomalies: list[dict[str, object]] = []  # the first few, to debug a failure

    def now(self) -> int:
        """The current logical time: pass it as ``started_at_seq`` before issuing a read."""
        return next(self._clock)

    def begin_write(self, session: str, writes: Writes) -> WriteTicket:
        """Record a write about to be issued."""
        ticket = WriteTicket(session, writes, self.now())
        for key, value in _items(session, writes):
            hist = self._keys.setdefault(key, _History(key))
            if value is not None:
                if value in hist.by_value:
                    raise ValueError(f"value {value!r} written twice to {key}: use a counter")
                hist.by_value[value] = ticket
            hist.tickets.append(ticket)
        self.counts["writes"] += 1
        return ticket

    def ack(self, ticket: WriteTicket) -> None:
        """The write was acknowledged: it must be visible to every read that begins later."""
        ticket.ended, ticket.acked = self.now(), True
        self.counts["acked"] += 1
        for key, _ in _items(ticket.session, ticket.writes):
            self._keys[key].last_ack = ticket  # the latest ack so far has the greatest ``ended``

    def fail(self, ticket: WriteTicket, exc: BaseException) -> None:
        """The write raised: its outcome is unknown (it may or may not have been applied)."""
        ticket.ended = self.now()
        self.counts["failed"] += 1
        self.errors[type(exc).__name__] += 1

    def check_read(
        self,
        session: str,
        key_type: str,
        ids: Iterable[str],
        result: dict[str, object],
        *,
        started_at_seq: int,
        reader: Hashable = None,
    ) -> None:
        """Check a ``keys.get(key_type, ids)`` that began at ``started_at_seq`` and just ended."""
        ended = self.now()
        for key_id in ids:
            key = (session, key_type, key_id)
            value = result.get(key_id)
            self.counts["reads"] += 1
            hist = self._keys.get(key) or _History(key)
            last = _last_ack_before(hist, started_at_seq)
            if value not in (allowed := _allowed(hist, last, ended)):
                self.counts["stale_reads"] += 1
                self._note("stale", key, value, sorted(allowed, key=repr), started_at_seq, ended)
            got = _writer_of(hist, value, ended)
            if got is None:
                continue
            seen = self._seen.get((reader, key))
            if seen is not None and got.begun < seen.begun:
                if seen.acked and seen.ended is not None and seen.ended < started_at_seq:
                    self.counts["out_of_order"] += 1
                    self._note(
                        "out_of_order", key, value, [_value(seen, key)], started_at_seq, ended
                    )
                continue
            self._seen[(reader, key)] = got

    def _note(
        self,
        kind: str,
        key: Key,
        value: object,
        expected: list[object | None],
        started: int,
        ended: int,
    ) -> None:
        if len(self.anomalies) < 20:
            hist = self._keys.get(key)
            tail = (
                [(t.begun, t.ended, t.acked, _value(t, key)) for t in hist.tickets[-4:]]
                if (hist)
                else []
            )
            self.anomalies.append(
                {
                    "kind": kind,
                    "key": key,
                    "got": value,
                    "expected": expected,
                    "read": (started, ended),
                    "last_writes": tail,
                }
            )

    def keys(self) -> list[Key]:
        """Every key written (the final state to read for ``lost_writes``)."""
        return list(self._keys)

    def lost_writes(self, final: dict[Key, object | None]) -> list[LostWrite]:
        """Keys whose ``final`` value (absent: missing or ``None``) breaks the invariant."""
        end = self.now()
        lost = []
        for key, hist in self._keys.items():
            last = _last_ack_before(hist, end)
            if last is None:
                continue  # nothing acknowledged: any outcome of the unknown writes is fine
            if final.get(key) not in _allowed(hist, last, end):
                expected = _value(last, key)
                lost.append(LostWrite(key, expected, final.get(key)))
        self.counts["lost"] = len(lost)
        return lost

    def report(self) -> dict[str, object]:
        """Counts of writes, acks, failures, reads, stale reads, out-of-order reads, lost keys."""
        names = ("writes", "acked", "failed", "reads", "stale_reads", "out_of_order", "lost")
        return {**{name: self.counts[name] for name in names}, "errors": dict(self.errors)}


def _items(session: str, writes: Writes) -> Iterable[tuple[Key, object | None]]:
    for key_type, values in writes.items():
        for key_id, value in values.items():
            yield (session, key_type, key_id), value


def _value(ticket: WriteTicket, key: Key) -> object | None:
    return ticket.writes[key[1]][key[2]]


def _last_ack_before(hist: _History, at: int) -> WriteTicket | None:
    if hist.last_ack is not None and hist.last_ack.ended is not None and hist.last_ack.ended < at:
        return hist.last_ack
    best: WriteTicket | None = None
    for t in hist.tickets:
        if (
            t.acked
            and t.ended is not None
            and t.ended < at
            and (best is None or t.ended > (best.ended or 0))
        ):
            best = t
    return best


def _allowed(hist: _History, last: WriteTicket | None, ended: int) -> set[object | None]:
    floor = last.begun if last is not None else 0
    key = hist.key
    allowed: set[object | None] = {_value(last, key) if last is not None else None}
    for t in reversed(hist.tickets):
        if t.begun < ended and (t.ended is None or t.ended > floor):
            allowed.add(_value(t, key))
    return allowed


def _writer_of(hist: _History, value: object | None, ended: int) -> WriteTicket | None:
    """The write whose value this is; for "absent", the newest delete begun before the read."""
    if value is not None:
        return hist.by_value.get(value)
    deletes = (t for t in reversed(hist.tickets) if t.begun < ended and _value(t, hist.key) is None)
    return next(deletes, None)
