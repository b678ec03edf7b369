"""Tiering: the engine behind :class:`~baileys_store.AuthStore` (caches, leases, the outbox)."""

from ._guard import Guard, TierGuard
from ._lease import Lease, LeaseManager
from ._memory_tier import MemoryTier
from ._state import SessionState, SessionStates
from ._worker import OutboxWorker
from ._writes import Engine

__all__ = [
    "Engine",
    "Guard",
    "Lease",
    "LeaseManager",
    "MemoryTier",
    "OutboxWorker",
    "SessionState",
    "SessionStates",
    "TierGuard",
]
