"""Leases and fences of the SQLite tier, as transactions run on the writer's connection.

A session's fence lives in its ``bs_sessions`` row, or in a fence tombstone (``bs_fences``)
while it has no row: deleted, or fenced by ``advance_fence`` before its first write. Lease
rows (``bs_leases``) are never deleted: their token keeps lease tokens monotonic.
"""

from __future__ import annotations

import sqlite3
import time

from ..._model import SessionAddr, lease_token_of
from .._fences import check_fence
from . import _schema as q


def tombstone(conn: sqlite3.Connection, key: tuple[str, str]) -> int:
    """The fence of a session that has no row (0 if it never had one): see ``bs_fences``."""
    row = conn.execute(q.SELECT_TOMBSTONE, key).fetchone()
    return int(row[0]) if row else 0


def put_tombstone(conn: sqlite3.Connection, key: tuple[str, str], fence: int) -> None:
    """Keep ``fence`` for a session whose row is gone (the caller checked it is not lower)."""
    conn.execute(q.PUT_TOMBSTONE, (*key, fence))


def delete_session(conn: sqlite3.Connection, addr: SessionAddr, fence: int | None) -> bool:
    """Delete the session row and its keys; its fence stays (tombstone)."""
    key = (addr.namespace, addr.session_id)
    row = conn.execute(q.SELECT_SESSION, key).fetchone()
    current = check_fence(addr, row[0] if row else tombstone(conn, key), fence)
    keys = conn.execute(q.CLEAR_KEYS, key).rowcount
    rows = conn.execute(q.DELETE_SESSION, key).rowcount
    if current:
        put_tombstone(conn, key, current)
    return bool(keys or rows)


def advance_fence(conn: sqlite3.Connection, addr: SessionAddr, token: int) -> None:
    """Record ``token`` as the session's fence (FencedError if it saw a higher one)."""
    key = (addr.namespace, addr.session_id)
    row = conn.execute(q.SELECT_SESSION, key).fetchone()
    if row is not None:
        conn.execute(q.SET_FENCE, (check_fence(addr, row[0], token), *key))
    else:  # no row to carry it (deleted, or not written yet): the tombstone does
        put_tombstone(conn, key, check_fence(addr, tombstone(conn, key), token))


def acquire(
    conn: sqlite3.Connection, addr: SessionAddr, owner: str, ttl_ms: int, floor: int
) -> int | None:
    """Take the lease if free, expired or ``owner``'s: a new, higher token."""
    key = (addr.namespace, addr.session_id)
    now = time.time()
    row = conn.execute(q.SELECT_LEASE, key).fetchone()
    if row is not None and row[0] and row[0] != owner and row[2] > now:
        return None
    sess = conn.execute(q.SELECT_SESSION, key).fetchone()
    fence = lease_token_of(sess[0] if sess else tombstone(conn, key))
    token = max(row[1] if row else 0, fence, floor) + 1
    conn.execute(q.PUT_LEASE, (*key, owner, token, now + ttl_ms / 1000))
    return int(token)


def renew(conn: sqlite3.Connection, addr: SessionAddr, owner: str, token: int, ttl_ms: int) -> bool:
    """Extend the lease while ``owner`` holds it (unexpired) with ``token``."""
    now = time.time()
    args = (now + ttl_ms / 1000, addr.namespace, addr.session_id, owner, token, now)
    return conn.execute(q.RENEW_LEASE, args).rowcount == 1


def release(conn: sqlite3.Connection, addr: SessionAddr, owner: str, token: int) -> bool:
    """Drop the lease if ``owner`` still holds it with ``token``."""
    args = (addr.namespace, addr.session_id, owner, token)
    return conn.execute(q.RELEASE_LEASE, args).rowcount == 1
