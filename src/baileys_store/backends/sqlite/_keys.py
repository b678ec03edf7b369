"""Write transactions of keys and creds, run on the writer's connection inside its group.

Each one is a plain function of the connection: the batcher wraps it in a savepoint of the
group's ``BEGIN IMMEDIATE … COMMIT`` (see :mod:`._writer`), so it is atomic on its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..._model import CredsRecord, KeyWrite, SessionAddr
from .._fences import check_fence, check_version
from . import _schema as q
from ._leases import tombstone

_ROWS = 200  # rows per multi-row upsert (measured fastest; larger statements cost more to prepare)


def write_keys(
    conn: sqlite3.Connection, addr: SessionAddr, writes: Sequence[KeyWrite], fence: int | None
) -> None:
    """Fence check, session upsert, then the writes."""
    touch(conn, addr, fence)
    apply_writes(conn, addr, writes)


def clear_keys(conn: sqlite3.Connection, addr: SessionAddr, fence: int | None) -> int:
    """Delete every key row of the session; how many there were."""
    touch(conn, addr, fence)
    return conn.execute(q.CLEAR_KEYS, (addr.namespace, addr.session_id)).rowcount


def save_creds(
    conn: sqlite3.Connection,
    addr: SessionAddr,
    blob: bytes,
    expected_version: int | None,
    fence: int | None,
) -> int:
    """Compare-and-set of the creds; the new version."""
    version = check_version(addr, touch(conn, addr, fence), expected_version)
    conn.execute(q.SAVE_CREDS, (blob, version, addr.namespace, addr.session_id))
    return version


def apply_batch(
    conn: sqlite3.Connection,
    addr: SessionAddr,
    writes: Sequence[KeyWrite],
    creds: CredsRecord | None,
    *,
    seq: int,
    fence: int | None,
) -> bool:
    """An outbox batch unless its sequence was applied already (then False)."""
    ns, sid = addr.namespace, addr.session_id
    row = conn.execute(q.SELECT_SEQ, (ns, sid)).fetchone()
    if row is not None and int(row[0]) >= seq:
        return False
    touch(conn, addr, fence)
    apply_writes(conn, addr, writes)
    if creds is not None:
        conn.execute(q.SAVE_CREDS, (creds.blob, creds.version, ns, sid))
    conn.execute(q.SET_SEQ, (seq, ns, sid))
    return True


def touch(conn: sqlite3.Connection, addr: SessionAddr, fence: int | None) -> int:
    """Fence check + session upsert inside the caller's transaction; returns the version.

    One read when the row exists (the hot path); a missing row is fenced by its tombstone,
    which the re-created row takes over in the same transaction.
    """
    key = (addr.namespace, addr.session_id)
    row = conn.execute(q.SELECT_SESSION, key).fetchone()
    current_fence = row[0] if row else tombstone(conn, key)
    new_fence = check_fence(addr, current_fence, fence)
    now = time.time()
    conn.execute(q.TOUCH_SESSION, (*key, new_fence, now, now))
    if row is None and current_fence:
        conn.execute(q.DROP_TOMBSTONE, key)
    return int(row[1]) if row else 0


def apply_writes(conn: sqlite3.Connection, addr: SessionAddr, writes: Sequence[KeyWrite]) -> None:
    """Upserts and deletes (``blob=None``) of one write, inside the caller's transaction.

    In order, per type, a statement per run of up to ``_ROWS`` upserts or ``ID_CHUNK`` deletes:
    consecutive writes of one kind group, so a delete and a later re-write of an id keep
    their order.
    """
    head = (addr.namespace, addr.session_id)
    run: list[KeyWrite] = []
    for w in writes:
        if run and (
            w.type != run[0].type
            or (w.blob is None) != (run[0].blob is None)
            or len(run) >= (_ROWS if w.blob is not None else q.ID_CHUNK)
        ):
            _apply_run(conn, head, run)
            run = []
        run.append(w)
    if run:
        _apply_run(conn, head, run)


def _apply_run(conn: sqlite3.Connection, head: tuple[str, str], run: list[KeyWrite]) -> None:
    """Writes of one type and kind (all upserts or all deletes) as one statement."""
    if run[0].blob is None:
        marks = ",".join("?" * len(run))
        conn.execute(q.DELETE_KEYS.format(marks=marks), (*head, run[0].type, *(w.id for w in run)))
        return
    args: list[object] = [*head, run[0].type]
    for w in run:
        args += (w.id, w.blob)
    conn.execute(q.UPSERT_KEYS.format(rows=",".join(["(?,?)"] * len(run))), args)
