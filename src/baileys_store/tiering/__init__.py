"""Tiering: the engine behind :class:`~baileys_store.AuthStore` (caches, leases, the outbox)."""

from ._guard import Guard, TierGuard
from ._lease import Lease, LeaseManager
from ._state import SessionState, SessionStates
from ._worker import OutboxWorker
from ._writes import Engine

__all__ = [
    "Engine",
    "Guard",
    "Lease",
    "LeaseManager",
    "OutboxWorker",
    "SessionState",
    "SessionStates",
    "TierGuard",
]
