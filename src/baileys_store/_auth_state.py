"""``use_auth_state``: the one-call helper in the style of Baileys' ``useMultiFileAuthState``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._config import StoreConfig
from ._creds import creds_to_dict
from ._session import KeyStore, SessionAuth
from ._store import AuthStore


@dataclass(slots=True)
class AuthState:
    """``creds`` (a dict, mutated by the client) and ``keys`` (the session's key store)."""

    creds: dict[str, Any]
    keys: KeyStore


class CredsSaver:
    """Saves the current creds with compare-and-set on the version it last saw.

    Concurrent calls (``creds.update`` fires in bursts) are serialized. If another process saved
    the same session meanwhile, the save raises :class:`ConflictError` instead of silently
    overwriting newer creds.
    """

    __slots__ = ("_get", "_lock", "_session", "version")

    def __init__(self, session: SessionAuth, get_creds: Callable[[], object], version: int) -> None:
        self._session = session
        self._get = get_creds
        self._lock = asyncio.Lock()
        self.version = version

    async def __call__(self, *_event: object) -> int:
        """Persist the creds; extra positional arguments (an event payload) are ignored."""
        async with self._lock:
            self.version = await self._session.save_creds(
                self._get(), expected_version=self.version
            )
            return self.version


async def use_auth_state(
    session_id: str,
    config: StoreConfig | str | None = None,
    *,
    namespace: str = "default",
    init_creds: Callable[[], Any] | None = None,
    store: AuthStore | None = None,
) -> tuple[AuthState, Callable[..., Awaitable[int]], AuthStore]:
    """Load (or create) a session's auth state.

    Returns ``(state, save_creds, store)``: ``state.creds`` is the stored creds dict, or
    ``init_creds()`` (converted to a dict) for a new session, or ``{}`` without ``init_creds``;
    ``save_creds()`` persists ``state.creds``; ``store`` is the opened store, which the caller
    closes with ``await store.close()`` (unless it passed its own ``store``).
    """
    owned = store is None
    if store is None:
        cfg = StoreConfig(durable=config) if isinstance(config, str) else config
        store = AuthStore(cfg)
        await store.open()
    session = store.session(session_id, namespace=namespace)
    try:
        creds, version = await session.load_versioned_creds()
    except BaseException:
        if owned:  # a store the caller passed in stays open: it is theirs
            await store.close()
        raise
    if creds is None:
        creds = creds_to_dict(init_creds()) if init_creds is not None else {}
    state = AuthState(creds, session.keys)
    return state, CredsSaver(session, lambda: state.creds, version), store
