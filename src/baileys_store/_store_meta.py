"""What the durable tier records about the store itself: encryption mode, key fingerprints.

Checked once at open, before any record is read or written (see issue 12, item 1).
"""

from __future__ import annotations

from ._config import StoreConfig
from .backends.base import DurableBackend


async def verify_store_meta(durable: DurableBackend, config: StoreConfig) -> None:
    """Bind or check the store's encryption metadata; ConfigError on a mismatch.

    Placeholder: filled in by the encryption-metadata change.
    """
    del durable, config
