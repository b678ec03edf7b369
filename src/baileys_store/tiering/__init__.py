"""Tiering: the engine behind :class:`~baileys_store.AuthStore` (caches, leases, the outbox).

The store builds one :class:`Engine`; its sessions get :class:`SessionOps`.
"""

from ._engine import Engine, SessionOps

__all__ = ["Engine", "SessionOps"]
