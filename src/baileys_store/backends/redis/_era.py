"""The master's era: which Redis process, with which replication history, serves a prefix.

Redis replicates asynchronously, so a replica promoted by Sentinel (or a server restarted from
an older RDB/AOF file) may lack the last writes the previous master acknowledged. The era names
the master: ``run_id`` (new on every start of a process) and ``master_replid`` (new when a
replica is promoted, and when a server becomes a replica and resyncs). Either changing means
the data may have rolled back.

It is probed once per *new connection*, never per command: the connection class of the
client (standalone and sentinel modes; a Cluster has one master per slot range and is left out)
runs ``INFO server`` and ``INFO replication`` right after its handshake, then makes sure the
server's ``baileys_store.era`` key holds that era (``GET``, and ``SET`` when it differs). The
scripts read that key inside the server (:file:`lua/_hybrid.lua`, ``enter``), so they always
compare a session's data with the era of the server they run on, whatever the client knew when
it built the call: every connection to a new master set the key before its first command.

A server that refuses ``INFO`` (renamed, or an ACL without it) has no known era: nothing is
set and the scripts skip the check (``ERA_KEY`` unset); a warning is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis import exceptions as rex
from redis.asyncio.connection import AbstractConnection

log = logging.getLogger("baileys_store")

# One key per server (database), outside every prefix (``.`` is not allowed in a prefix, so no
# store's ``<prefix>:...`` key can be it): the era is the server's, the same for every store.
ERA_KEY = "baileys_store.era"


def _fields(raw: Any) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            out[name.strip()] = value.strip()
    return out


class EraProbe:
    """The era every new connection of one client reports (see the module doc).

    Args:
        key: The server key the era is kept in (:data:`ERA_KEY`).
        tier: For messages.

    Attributes:
        era: The era last seen (``None``: none yet, or the server does not tell).
        changes: Era changes seen since the runner opened (the first era is not one).
        on_change: Called with ``(old, new)`` when a new connection finds another era.
    """

    def __init__(self, key: str, tier: str) -> None:
        self.key = key
        self.tier = tier
        self.era: str | None = None
        self.changes = 0
        self.on_change: list[Callable[[str, str], None]] = []
        self._warned = False

    async def probe(self, conn: AbstractConnection) -> None:
        """Read the server's era on a fresh connection and store it in the era key."""
        try:
            await conn.send_packed_command(
                conn.pack_commands([("INFO", "server"), ("INFO", "replication")])
            )
            server = _fields(await conn.read_response())
            repl = _fields(await conn.read_response())
        except rex.ResponseError:  # INFO refused: this server cannot tell its era
            if not self._warned:
                self._warned = True
                log.warning(
                    "redis %s tier: INFO is refused, so a failover or restart that rolled "
                    "data back cannot be detected",
                    self.tier,
                    extra={"event": "redis_era_unknown", "tier": self.tier},
                )
            return
        if repl.get("role") != "master":
            return  # a replica (read-only): nothing we write goes here, no era to set
        era = f"{server.get('run_id', '?')}:{repl.get('master_replid', '?')}"
        await conn.send_command("GET", self.key)
        found = await conn.read_response()
        if (found.decode() if isinstance(found, bytes) else found) != era:
            await conn.send_command("SET", self.key, era)
            await conn.read_response()
        self.saw(era)

    def saw(self, era: str) -> None:
        """Note ``era``; tell the listeners when it differs from the one seen before."""
        old, self.era = self.era, era
        if old is None or old == era:
            return
        self.changes += 1
        log.warning(
            "redis %s tier: the master changed (failover or restart); its last "
            "acknowledged writes may be missing (asynchronous replication)",
            self.tier,
            extra={"event": "redis_master_changed", "tier": self.tier},
        )
        for listener in self.on_change:
            listener(old, era)


def with_probe(
    probe: EraProbe,
) -> Callable[[type[AbstractConnection]], type[AbstractConnection]]:
    """A function making a connection class that runs ``probe`` after each handshake.

    Also marks a failure to connect as :class:`NotSentError` (nothing of the command that
    wanted the connection was sent), so a non-repeatable write may still be retried on it.
    """

    def wrap(base: type[AbstractConnection]) -> type[AbstractConnection]:
        class EraConnection(base):  # type: ignore[valid-type,misc]
            async def on_connect_check_health(self, check_health: bool = True) -> None:
                await super().on_connect_check_health(check_health=check_health)
                await probe.probe(self)

            # Both entry points: the pool connects through ``connect`` (Sentinel: master
            # discovery first), a command on a dropped connection through the other.
            async def connect(self) -> None:
                try:
                    await super().connect()
                except (NotSentError, rex.AuthenticationError, rex.AuthorizationError):
                    raise
                except (rex.ConnectionError, rex.TimeoutError) as exc:
                    raise NotSentError(str(exc)) from exc

            async def connect_check_health(
                self, check_health: bool = True, retry_socket_connect: bool = True
            ) -> None:
                try:
                    await super().connect_check_health(
                        check_health=check_health, retry_socket_connect=retry_socket_connect
                    )
                except (NotSentError, rex.AuthenticationError, rex.AuthorizationError):
                    raise
                except (rex.ConnectionError, rex.TimeoutError) as exc:
                    raise NotSentError(str(exc)) from exc

        EraConnection.__name__ = EraConnection.__qualname__ = f"Era{base.__name__}"
        return EraConnection

    return wrap


class NotSentError(rex.ConnectionError):
    """A connection could not be opened: the command that needed it was never sent."""
