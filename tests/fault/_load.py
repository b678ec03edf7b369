"""The failover tests' load model: writes and reads checked against :class:`Checker`.

Counts the outcomes a fault may cause (read errors, torn reads, untyped errors, hung calls), and
the first write begun after the fault that was acknowledged (the recovery time).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from baileys_store import AuthStore, errors
from tests.fault._checker import Checker, Key


@dataclass
class Load:
    """The writers' shared model, counters and timings (``op_timeout``: the store's)."""

    op_timeout: float
    checker: Checker = field(default_factory=Checker)
    values: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    outcomes: Counter[str] = field(default_factory=Counter)
    fault_at: float | None = None  # monotonic time of the kill / the demotion
    first_ok_after: float | None = None  # first write begun after the fault and acknowledged
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def _bound(self) -> float:
        return 4 * self.op_timeout + 2  # a call past this is "hung", whatever it raises later

    async def write(self, store: AuthStore, sid: str, writes: dict[str, dict[str, Any]]) -> bool:
        """One checked ``keys.set``; True when acknowledged."""
        begun = time.monotonic()
        ticket = self.checker.begin_write(sid, writes)
        try:
            async with asyncio.timeout(self._bound):
                await store.session(sid).keys.set(writes)
        except Exception as exc:
            self.checker.fail(ticket, exc)
            self.classify(exc)
            return False
        self.checker.ack(ticket)
        if self.fault_at is not None and begun > self.fault_at and self.first_ok_after is None:
            self.first_ok_after = time.monotonic()
        return True

    async def read(self, store: AuthStore, sid: str, key_type: str, ids: list[str]) -> None:
        """One checked ``keys.get`` (the ids of one write: all from one write, or torn)."""
        start = self.checker.now()
        try:
            async with asyncio.timeout(self._bound):
                got = await store.session(sid).keys.get(key_type, ids)
        except Exception as exc:
            self.outcomes["read_errors"] += 1
            self.classify(exc)
            return
        self.checker.check_read(sid, key_type, ids, got, started_at_seq=start, reader=ids[0])
        if key_type == "session" and len({repr(got.get(i)) for i in ids}) > 1:
            self.outcomes["torn"] += 1  # the keys of one write, seen from different writes

    def classify(self, exc: BaseException) -> None:
        """Count a failure that is not the allowed ``UnavailableError``."""
        if isinstance(exc, errors.DataLossError):
            self.outcomes["data_loss_errors"] += 1
            return
        if isinstance(exc, errors.UnavailableError):
            return  # the allowed failure (BreakerOpenError included)
        name = "hung" if isinstance(exc, TimeoutError) else f"untyped:{type(exc).__name__}"
        self.outcomes[name] += 1


async def final_state(store: AuthStore, keys: list[Key]) -> dict[Key, object | None]:
    """The value of each key at the end (creds: their ``fault_n``), read through the store."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for sid, key_type, key_id in keys:
        wanted.setdefault((sid, key_type), []).append(key_id)
    out: dict[Key, object | None] = {}
    for (sid, key_type), ids in wanted.items():
        if key_type == "creds":
            creds = await store.session(sid).load_creds()
            out[(sid, "creds", "")] = creds["fault_n"] if creds else None
            continue
        got = await store.session(sid).keys.get(key_type, ids)
        out.update({(sid, key_type, i): got.get(i) for i in ids})
    return out
