"""The rows of the benchmark: each store configuration measured, and the baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """One row of the report.

    Attributes:
        name: Row name.
        group: ``baseline`` or ``ours``.
        description: What is measured, in one line.
        durable: Durable tier URL kind (``sqlite``, ``postgres``, ...), or a baseline's medium.
        cache: ``memory``, ``redis`` or ``None``.
        sync: ``fsync`` when every commit is flushed to disk, ``no-fsync`` otherwise.
        resident: Whether the resident-sessions figures are measured for it.
        options: Extra :class:`StoreConfig` fields.
    """

    name: str
    group: Literal["baseline", "ours"]
    description: str
    durable: str
    cache: str | None = None
    sync: str = "no-fsync"
    resident: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> tuple[str, ...]:
        """Servers this store needs."""
        kinds = {self.durable, self.cache or ""} & {"redis", "postgres", "mongodb"}
        return tuple(sorted(kinds))


def _our(
    name: str,
    description: str,
    durable: str,
    cache: str | None = None,
    *,
    sync: str = "no-fsync",
    resident: bool = False,
    **options: Any,
) -> StoreSpec:
    return StoreSpec(name, "ours", description, durable, cache, sync, resident, options)


SPECS: tuple[StoreSpec, ...] = (
    StoreSpec(
        "pyaileys-folder",
        "baseline",
        "pyaileys MultiFileAuthState: a JSON file per key",
        "folder",
        resident=True,
    ),
    StoreSpec(
        "session-blob",
        "baseline",
        "anchor-style whole-session msgpack blob in SQLite",
        "blob",
        resident=True,
    ),
    _our("memory", "memory:// durable, no cache (no I/O: the code path alone)", "memory"),
    _our(
        "sqlite-normal",
        "SQLite WAL synchronous=NORMAL, no cache",
        "sqlite",
        resident=True,
        sqlite_synchronous="normal",
    ),
    _our(
        "sqlite-full",
        "SQLite WAL synchronous=FULL (fsync per commit), no cache",
        "sqlite",
        sync="fsync",
        sqlite_synchronous="full",
    ),
    _our(
        "sqlite-normal+mem",
        "SQLite NORMAL + in-process memory cache",
        "sqlite",
        "memory",
        sqlite_synchronous="normal",
    ),
    _our(
        "sqlite-full+mem",
        "SQLite FULL + memory cache (the embedded default)",
        "sqlite",
        "memory",
        sync="fsync",
        sqlite_synchronous="full",
    ),
    _our("redis", "Redis alone as the durable tier", "redis", resident=True),
    _our(
        "redis/sqlite",
        "Redis cache + L1 over SQLite FULL (write-through, leases)",
        "sqlite",
        "redis",
        sync="fsync",
        sqlite_synchronous="full",
    ),
    # The same with NORMAL: what a write-through set costs without the fsync (~0.3 ms here).
    _our(
        "redis/sqlite-normal",
        "Redis cache + L1 over SQLite NORMAL (write-through)",
        "sqlite",
        "redis",
        sqlite_synchronous="normal",
    ),
    _our(
        "redis/sqlite-noL1",
        "Redis cache over SQLite FULL (write-through), no L1",
        "sqlite",
        "redis",
        sync="fsync",
        sqlite_synchronous="full",
        l1_max_entries=0,
    ),
    _our(
        "redis/sqlite-wb",
        "Redis cache + outbox over SQLite FULL (write-behind)",
        "sqlite",
        "redis",
        sync="fsync",
        sqlite_synchronous="full",
        write_mode="write-behind",
    ),
    _our("postgres", "PostgreSQL, no cache", "postgres", sync="fsync", resident=True),
    _our(
        "redis/postgres",
        "Redis cache + L1 over PostgreSQL (write-through)",
        "postgres",
        "redis",
        sync="fsync",
    ),
    _our(
        "redis/postgres-wb",
        "Redis cache + outbox over PostgreSQL (write-behind)",
        "postgres",
        "redis",
        sync="fsync",
        write_mode="write-behind",
    ),
    _our(
        "mongodb",
        "MongoDB (here: SecantusDB, a Python server), no cache",
        "mongodb",
        sync="fsync",
        resident=True,
    ),
)
