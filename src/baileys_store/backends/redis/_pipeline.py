"""Auto-pipelining: the Redis commands of one event-loop iteration, sent as one pipeline.

With many sessions in flight, most of a Redis call's cost on the event loop is the ``send``
system call and the pool checkout (see ``docs/bench/profiles.md``), paid once per command.
:class:`Coalescer` collects the commands issued by every task in the same loop iteration and
writes them to one connection in one ``send``, then hands each caller its own replies: the
first caller of an iteration (the *leader*) yields once, so that the others can join, and sends
the batch; the others wait for their share. A caller alone sends at once on its own connection,
paying one extra loop iteration and no task.

redis-py's ``Pipeline`` is not used: it creates a task to reset itself and runs response
callbacks; this sends the packed commands and reads the raw RESP replies on a pooled connection,
as its ``_execute_pipeline`` does. Nothing else in redis-py batches commands across callers.

Semantics a caller sees are those of sending its commands on a connection of its own:

- its commands are contiguous and in order in the batch (other callers' commands run before or
  after them, never in between: each caller's group is one block on one connection);
- a reply that is an error (``NOSCRIPT``, ``WRONGTYPE``) is returned in place, as an exception
  instance; a connection error is raised to every caller of the batch (none of them knows
  whether its commands ran, exactly as when each sends alone), and
  :class:`~baileys_store.backends.redis._era.NotSentError` from opening the connection stays
  that type (nothing was sent);
- a caller cancelled while waiting leaves the batch running for the others. A batch of several
  callers runs in a task of its own, so the leader's cancellation (its deadline, its caller
  going away) does not cancel the others' commands half-way; a lone caller's cancellation drops
  its connection, as redis-py does.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

Command = tuple[Any, ...]
_Group = tuple[Sequence[Command], "asyncio.Future[list[Any]] | None"]


class Coalescer:
    """Sends the commands of concurrent callers of one loop iteration as one pipeline.

    Args:
        client: A standalone (or Sentinel-managed) client; its pool lends the connections.
            Not for Redis Cluster (one pipeline per node would need routing).
    """

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._open: list[_Group] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # batches in flight (kept referenced)
        self.batches = 0  # pipelines sent with more than one caller (for tests and metrics)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` (one block, in order) and return their raw replies.

        An error reply comes back as an exception instance in its place; a connection or
        timeout error is raised.
        """
        batch = self._open
        if batch is not None:  # a leader is collecting this iteration's commands: join it
            joined: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            batch.append((commands, joined))
            return await joined
        batch = self._open = [(commands, None)]
        try:
            await asyncio.sleep(0)  # let the other tasks of this iteration join the batch
        except asyncio.CancelledError:
            self._open = None
            if len(batch) > 1:  # the others are still owed their replies
                self._spawn(batch[1:])
            raise
        self._open = None
        if len(batch) == 1:
            return await self._send_alone(commands)
        own: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        batch[0] = (commands, own)
        self._spawn(batch)
        return await own

    def _spawn(self, batch: list[_Group]) -> None:
        self.batches += 1
        task = asyncio.get_running_loop().create_task(self._send_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_alone(self, commands: Sequence[Command]) -> list[Any]:
        conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await _roundtrip(conn, commands)
        finally:
            await self._pool.release(conn)

    async def _send_batch(self, batch: list[_Group]) -> None:
        flat = [cmd for commands, _ in batch for cmd in commands]
        try:
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                replies = await _roundtrip(conn, flat)
            finally:
                await self._pool.release(conn)
        except BaseException as exc:  # every caller learns it; none knows what ran
            for _, fut in batch:
                if fut is None or fut.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:  # a copy each: one instance raised in several tasks mixes tracebacks
                    fut.set_exception(copy.copy(exc))
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for commands, fut in batch:
            share = replies[at : at + len(commands)]
            at += len(commands)
            if fut is not None and not fut.done():  # a caller cancelled meanwhile: skipped
                fut.set_result(share)

    async def close(self) -> None:
        """Wait for the batches in flight (their callers are owed replies)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))


async def _roundtrip(conn: AbstractConnection, commands: Sequence[Command]) -> list[Any]:
    """Write ``commands`` in one send, read every reply (error replies returned in place)."""
    replies: list[Any] = []
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        # Cancelled or broken half-way: the rest of the replies are still on the socket, so
        # the connection must not go back to the pool as it is.
        await conn.disconnect(nowait=True)
        raise
    return replies
