"""baileys-store: WhatsApp multi-device auth state (creds + Signal keys) for Python clients.

The public API is what this module exports; everything in ``_`` modules is private.
"""

from . import errors
from ._auth_state import AuthState, CredsSaver, use_auth_state
from ._config import StoreConfig
from ._session import KeyStore, SessionAuth
from ._store import AuthStore, open_store
from .results import (
    DeadLetterRetry,
    PurgeReport,
    RotationReport,
    SessionInfo,
    StoreHealth,
    TierHealth,
)

__all__ = [
    "AuthState",
    "AuthStore",
    "CredsSaver",
    "DeadLetterRetry",
    "KeyStore",
    "PurgeReport",
    "RotationReport",
    "SessionAuth",
    "SessionInfo",
    "StoreConfig",
    "StoreHealth",
    "TierHealth",
    "errors",
    "open_store",
    "use_auth_state",
]
__version__ = "0.1.0"
