"""What ``sessions inspect`` and ``sessions stats`` report (tables and ``--json`` documents).

``stats`` counts keys and stored bytes per key type and per session, read from the durable
tier only, with nothing added to its contract: every session's ids come from ``iter_key_ids``
(page by page) and their blobs from ``get_keys`` in chunks of at most :data:`CHUNK` ids of one
type, summed and dropped, so memory holds one chunk (plus one small row per session) whatever
the store's size. Bytes are the blobs as stored (after compression and encryption, without the
database's own overhead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .._model import SessionAddr
from .._store import AuthStore
from ..contracts import DurableBackend

CHUNK = 500
_FLAVOUR_TEXT = {"node": "node (camelCase)", "pyaileys": "pyaileys (snake_case)"}


def _pick(creds: Mapping[str, Any], *names: str) -> Any:
    return next((creds[n] for n in names if n in creds), None)


def creds_facts(creds: Mapping[str, Any]) -> dict[str, Any]:
    """Non-secret facts about creds: flavour, pairing state, account JID, pre-key counter."""
    me = _pick(creds, "me")
    me_id = me.get("id") if isinstance(me, Mapping) else None
    flavour = "node" if "noiseKey" in creds else "pyaileys" if "noise_key" in creds else "unknown"
    return {
        "flavour": flavour,
        "registered": bool(_pick(creds, "registered")),
        "account": str(me_id) if me_id else None,
        "next_pre_key_id": _pick(creds, "nextPreKeyId", "next_pre_key_id"),
    }


def creds_rows(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """:func:`creds_facts` as the rows of ``inspect``'s table."""
    return [
        ("creds flavour", _FLAVOUR_TEXT.get(facts["flavour"], "unknown")),
        ("registered", str(facts["registered"])),
        ("account", facts["account"] or "- (not paired)"),
        ("next pre-key id", str(facts["next_pre_key_id"])),
    ]


@dataclass(slots=True)
class SessionStats:
    """One session's line: its last write (unix seconds, 0: unknown), keys and bytes."""

    namespace: str
    session_id: str
    updated_at: float
    keys: int = 0
    bytes: int = 0


@dataclass(slots=True)
class StoreStats:
    """The whole report: ``types`` maps a key type to ``[count, bytes]``."""

    namespace: str | None
    types: dict[str, list[int]] = field(default_factory=dict)
    sessions: list[SessionStats] = field(default_factory=list)


async def _measure(
    durable: DurableBackend, addr: SessionAddr, row: SessionStats, into: StoreStats
) -> None:
    pending: list[str] = []
    pending_type = ""

    async def flush() -> None:
        if not pending:
            return
        blobs = await durable.get_keys(addr, pending_type, pending)
        size = sum(map(len, blobs.values()))
        totals = into.types.setdefault(pending_type, [0, 0])
        totals[0] += len(blobs)
        totals[1] += size
        row.keys += len(blobs)
        row.bytes += size
        pending.clear()

    async for key_type, key_id in durable.iter_key_ids(addr):
        if key_type != pending_type or len(pending) >= CHUNK:
            await flush()
            pending_type = key_type
        pending.append(key_id)
    await flush()


async def gather_stats(store: AuthStore, namespace: str | None) -> StoreStats:
    """Every session of ``namespace`` (``None``: all) measured on ``store``'s durable tier."""
    durable = store.durable
    stats = StoreStats(namespace)
    # Listed first, measured after: a listing cursor is never held across the key reads.
    infos = [info async for info in durable.list_sessions(namespace)]
    for info in infos:
        row = SessionStats(info.namespace, info.session_id, info.updated_at)
        await _measure(durable, SessionAddr(info.namespace, info.session_id), row, stats)
        stats.sessions.append(row)
    return stats


def when(ts: float) -> str:
    """A unix time as UTC text (``-`` for 0: unknown)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def stats_json(stats: StoreStats) -> dict[str, Any]:
    """The ``--json`` document (keys documented in the command's help)."""
    keys = sum(row.keys for row in stats.sessions)
    size = sum(row.bytes for row in stats.sessions)
    return {
        "namespace": stats.namespace,
        "types": {t: {"count": c, "bytes": b} for t, (c, b) in sorted(stats.types.items())},
        "sessions": [
            {
                "namespace": row.namespace,
                "session_id": row.session_id,
                "updated_at": row.updated_at or None,
                "keys": row.keys,
                "bytes": row.bytes,
            }
            for row in stats.sessions
        ],
        "totals": {"sessions": len(stats.sessions), "keys": keys, "bytes": size},
    }


def print_stats(out: Console, stats: StoreStats) -> None:
    """The per-type table, then the per-session table (or that there are no sessions)."""
    if not stats.sessions:
        where = f" in namespace {stats.namespace}" if stats.namespace else ""
        out.print(f"No sessions{where}.")
        return
    per_type = Table("Key type", "Keys", "Bytes", "Avg bytes")
    for key_type, (count, size) in sorted(stats.types.items()):
        per_type.add_row(key_type, str(count), str(size), str(size // count) if count else "-")
    keys = sum(c for c, _ in stats.types.values())
    size = sum(b for _, b in stats.types.values())
    per_type.add_row(
        "total", str(keys), str(size), str(size // keys) if keys else "-", style="bold"
    )
    out.print(per_type)
    per_session = Table("Namespace", "Session", "Keys", "Bytes", "Last write")
    per_session.columns[0].overflow = per_session.columns[1].overflow = "fold"
    for row in stats.sessions:
        per_session.add_row(
            row.namespace, row.session_id, str(row.keys), str(row.bytes), when(row.updated_at)
        )
    out.print(per_session)
    out.print(f"{len(stats.sessions)} session(s)")
