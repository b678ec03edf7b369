"""The durable tier's session index: ``<prefix>:sessions``, and ``list_sessions`` over it.

A sorted set with members ``ns NUL sid`` (all scores 0, so lexical order is (namespace,
session_id) order). In a Cluster it lives in another slot than the sessions, so it cannot
change in the same atomic step as a session: :class:`~._durable.RedisDurable` indexes a session
before creating it and checks again after a delete (see the package doc for the trade-off).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ... import errors
from ..._model import SessionAddr
from ...results import SessionInfo
from ._client import ScriptRunner, index_member

_PAGE = 500


class SessionIndex:
    """Adds, removes and lists the entries of the session index."""

    def __init__(self, runner: ScriptRunner) -> None:
        self._runner = runner
        self._key = f"{runner.prefix}:sessions"

    async def add(self, addr: SessionAddr) -> None:
        """Index the session (idempotent)."""
        key, member, client = self._key, index_member(addr), self._runner.client
        await self._runner.run("index", lambda: client.zadd(key, {member: 0}))

    async def remove(self, addr: SessionAddr) -> None:
        """Drop the session's entry."""
        key, member, client = self._key, index_member(addr), self._runner.client
        await self._runner.run("index", lambda: client.zrem(key, member))

    async def sessions(self, namespace: str | None = None) -> AsyncIterator[SessionInfo]:
        """Pages of the index, each checked against the sessions' meta hashes."""
        key, client = self._key, self._runner.client
        lo: bytes = b"-" if namespace is None else b"[" + namespace.encode() + b"\0"
        hi: bytes = b"+" if namespace is None else b"(" + namespace.encode() + b"\1"
        while True:
            members: list[Any] = await self._runner.run(
                "list_sessions",
                lambda lo=lo: client.zrangebylex(key, lo, hi, start=0, num=_PAGE),  # type: ignore[misc]
            )
            if not members:
                return
            addrs = [self._parse(m) for m in members]
            rows = await self._runner.run("list_sessions", lambda a=addrs: self._metas(a))  # type: ignore[misc]
            for addr, (version, updated) in zip(addrs, rows, strict=True):
                if updated is not None:  # no meta: a dead index entry
                    yield SessionInfo(
                        addr.namespace, addr.session_id, int(version or 0), float(updated)
                    )
            if len(members) < _PAGE:
                return
            lo = b"(" + members[-1]

    async def _metas(self, addrs: list[SessionAddr]) -> list[Any]:
        async with self._runner.client.pipeline(transaction=False) as pipe:
            for addr in addrs:
                pipe.hmget(self._runner.base(addr) + "m", ["v", "u"])
            rows: list[Any] = await pipe.execute()
        return rows

    @staticmethod
    def _parse(member: bytes) -> SessionAddr:
        ns, sep, sid = member.decode("utf-8", "replace").partition("\0")
        if not sep:
            raise errors.CorruptDataError("redis: malformed entry in the session index")
        return SessionAddr(ns, sid)
