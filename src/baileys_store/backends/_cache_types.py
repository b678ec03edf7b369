"""What a cache tier's reads return (shared by the in-process and the Redis cache tiers)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import CredsRecord


@dataclass(frozen=True, slots=True)
class CachedKeys:
    """A cache read: live blobs, ids known absent (tombstones), and the write stamp."""

    found: dict[str, bytes]
    absent: frozenset[str]
    stamp: int


@dataclass(frozen=True, slots=True)
class CachedCreds:
    """A cached creds read: ``known`` when the cache knows the version (with or without creds)."""

    record: CredsRecord | None
    known: bool
    stamp: int
