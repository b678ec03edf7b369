"""What the durable tier records about the store itself: encryption mode, key fingerprints.

Checked once at open, before any record is read or written (see issue 12, item 1):

- ``encryption``: ``none`` or ``encrypted``. A store written encrypted refuses to open without
  encryption (its records would not decrypt, and new plaintext records would sit beside them);
  a store written without encryption refuses to open encrypted unless ``allow_plaintext_reads``
  is set, the migration (then the store is marked ``encrypted`` from here on).
- ``key_fp:<id>``: a fingerprint of each master key, HMAC-SHA256 keyed by the key over a fixed
  label (not the key, nor a plain hash of it). A configured key id whose fingerprint differs
  from the one recorded is a different key under a reused id: refused. Ids no longer configured
  are fine (rotation drops old keys); new ids are recorded.

Messages name key ids and modes only, never a key or a fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from .._config import StoreConfig
from ..contracts import DurableBackend
from ..errors import ConfigError

log = logging.getLogger("baileys_store")

_FP_LABEL = b"baileys-store key fingerprint v1"
ENCRYPTION = "encryption"


def key_fingerprint(key: bytes) -> str:
    """A non-secret identifier of a master key: HMAC-SHA256(key, label), 16 bytes, hex."""
    return hmac.digest(key, _FP_LABEL, hashlib.sha256)[:16].hex()


async def verify_store_meta(durable: DurableBackend, config: StoreConfig) -> None:
    """Bind or check the store's encryption metadata.

    Raises:
        ConfigError: the configured encryption mode or a master key does not match what the
            store was written with.
    """
    encrypted = config.encryption != "none"
    mode = "encrypted" if encrypted else "none"
    bound = await durable.bind_meta(ENCRYPTION, mode)
    if bound != mode:
        if not encrypted:
            raise ConfigError(
                "this store was written with encryption, but encryption is 'none': "
                "configure its encryption and master_keys"
            )
        if not config.allow_plaintext_reads:
            raise ConfigError(
                f"this store was written without encryption, but encryption is "
                f"{config.encryption!r}: set allow_plaintext_reads=True to migrate it (then run "
                "`baileys-store keys rotate`)"
            )
        log.warning(
            "plaintext store opened with encryption: marking it encrypted (migration)",
            extra={"event": "store_encryption_migrated"},
        )
        await durable.bind_meta(ENCRYPTION, mode, replace=True)
    if not encrypted:
        return
    ring = config.keyring()
    for kid in sorted(ring.ids):
        key = ring.get(kid)
        assert key is not None
        fp = key_fingerprint(key)
        if await durable.bind_meta(f"key_fp:{kid}", fp) != fp:
            raise ConfigError(
                f"master key {kid} does not match the key this store was written "
                "with (a different key under a reused id)"
            )
