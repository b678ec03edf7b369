"""Authenticated encryption of one blob, with its address bound as associated data."""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from ..errors import DecryptError

_GCM_NONCE = 12
_BOX_NONCE = SecretBox.NONCE_SIZE
_BOX_KDF_LABEL = b"baileys-store/xsalsa20-poly1305/v1\x00"


class Cipher(IntEnum):
    """Cipher ids stored in the blob header. Never renumber: stored data depends on them."""

    NONE = 0
    AES_256_GCM = 1
    XSALSA20_POLY1305 = 2


NAMES: dict[str, Cipher] = {
    "none": Cipher.NONE,
    "aes-256-gcm": Cipher.AES_256_GCM,
    "xsalsa20-poly1305": Cipher.XSALSA20_POLY1305,
}


def _box(master: bytes, aad: bytes) -> SecretBox:
    # SecretBox has no associated data, so the address is bound by deriving a per-record key
    # from it (HMAC-SHA256 as a PRF keyed by the master key): a blob moved elsewhere fails.
    return SecretBox(hmac.digest(master, _BOX_KDF_LABEL + aad, hashlib.sha256))


class CipherSuite:
    """Encrypts and decrypts with one algorithm; caches the AES-GCM objects per key."""

    __slots__ = ("_gcm",)

    def __init__(self) -> None:
        self._gcm: dict[bytes, AESGCM] = {}

    def _aes(self, key: bytes) -> AESGCM:
        aes = self._gcm.get(key)
        if aes is None:
            aes = self._gcm[key] = AESGCM(key)
        return aes

    def seal(self, cipher: Cipher, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext``; returns nonce + ciphertext + tag."""
        if cipher is Cipher.AES_256_GCM:
            nonce = os.urandom(_GCM_NONCE)
            return nonce + self._aes(key).encrypt(nonce, plaintext, aad)
        if cipher is Cipher.XSALSA20_POLY1305:
            nonce = os.urandom(_BOX_NONCE)
            return bytes(_box(key, aad).encrypt(plaintext, nonce))
        raise AssertionError(f"seal() called with cipher {cipher!r}")

    def open(self, cipher: Cipher, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Decrypt and authenticate; any failure raises :class:`DecryptError`."""
        try:
            if cipher is Cipher.AES_256_GCM:
                if len(sealed) < _GCM_NONCE + 16:
                    raise DecryptError("encrypted blob is truncated")
                nonce, body = sealed[:_GCM_NONCE], sealed[_GCM_NONCE:]
                return self._aes(key).decrypt(nonce, body, aad)
            if cipher is Cipher.XSALSA20_POLY1305:
                if len(sealed) < _BOX_NONCE + SecretBox.MACBYTES:
                    raise DecryptError("encrypted blob is truncated")
                return bytes(_box(key, aad).decrypt(sealed))
        except (InvalidTag, CryptoError):
            raise DecryptError(
                "authentication failed: wrong key, tampered data, or a blob moved from "
                "another address"
            ) from None
        raise AssertionError(f"open() called with cipher {cipher!r}")
