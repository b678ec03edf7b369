"""Master keys by id: the newest (or the configured active one) encrypts, every key decrypts."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from ..errors import ConfigError

KEY_BYTES = 32
MAX_KEY_ID = 0xFFFF
_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


def parse_master_key(text: str, *, key_id: int) -> bytes:
    """Decode a 32-byte master key given as 64 hex digits or (url-safe) base64.

    Anything else is a :class:`ConfigError`: a malformed key never falls back to a default.
    The message names the key id only.
    """
    raw = text.strip()
    if _HEX_RE.fullmatch(raw):
        return bytes.fromhex(raw)
    try:
        padded = raw + "=" * (-len(raw) % 4)
        alt = b"-_" if ("-" in raw or "_" in raw) else None
        key = base64.b64decode(padded, altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"master key {key_id} is neither 64 hex digits nor base64 of 32 bytes"
        ) from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"master key {key_id} decodes to {len(key)} bytes, expected 32")
    return key


class KeyRing:
    """An immutable set of 32-byte master keys addressed by ids ``1..65535``."""

    __slots__ = ("_active", "_keys")

    def __init__(self, keys: Mapping[int, bytes], active: int | None = None) -> None:
        for kid, key in keys.items():
            if not 1 <= kid <= MAX_KEY_ID:
                raise ConfigError(f"master key id {kid} out of range 1..{MAX_KEY_ID}")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"master key {kid} must be 32 bytes, got {len(key)}")
        if active is not None and active not in keys:
            raise ConfigError(f"active key id {active} is not in the key ring")
        self._keys = dict(keys)
        self._active = active if active is not None else (max(keys) if keys else None)

    @property
    def active_id(self) -> int | None:
        """The id new writes are encrypted with (``None`` for an empty ring)."""
        return self._active

    @property
    def ids(self) -> frozenset[int]:
        """Every key id the ring can decrypt with."""
        return frozenset(self._keys)

    def get(self, key_id: int) -> bytes | None:
        """The key for ``key_id``, or ``None`` when the ring does not hold it."""
        return self._keys.get(key_id)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:  # never show the keys themselves
        return f"KeyRing(ids={sorted(self._keys)}, active={self._active})"
