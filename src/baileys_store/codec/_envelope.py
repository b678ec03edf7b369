"""The stored blob: a fixed header, then the (compressed, encrypted) msgpack payload.

Layout (format 1)::

    0      1        2            3          4..5       6..
    magic  format   compression  cipher     key id BE  body
    0xB5   1        0..3         0..2       0 = none   cipher none: payload + CRC32
                                                       otherwise: nonce + ciphertext + tag

The header and the record's address are authenticated (AEAD associated data, or the CRC for
plaintext blobs), so a reader never guesses how a blob was written and a blob copied to another
namespace, session, type or id is rejected instead of being served as the wrong value.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from ..errors import CorruptDataError, DecryptError, InvalidInputError
from . import _compress, _serialize
from ._ciphers import Cipher, CipherSuite
from ._compress import Compression
from ._keyring import KeyRing

MAGIC = 0xB5
FORMAT = 1
_HEADER = struct.Struct(">BBBBH")
HEADER_SIZE = _HEADER.size


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def record_aad(
    kind: str, namespace: str, session_id: str, key_type: str = "", key_id: str = ""
) -> bytes:
    """The address bytes bound to a blob: length-prefixed so no two addresses collide."""
    return b"".join(_field(p) for p in (kind, namespace, session_id, key_type, key_id))


def session_aad(kind: str, namespace: str, session_id: str) -> Callable[[str, str], bytes]:
    """``record_aad`` for the records of one session, its prefix encoded once (hot in batches)."""
    prefix = b"".join(_field(p) for p in (kind, namespace, session_id))

    def aad(key_type: str, key_id: str) -> bytes:
        return prefix + _field(key_type) + _field(key_id)

    return aad


class Codec:
    """Turns values into self-describing blobs and back.

    Args:
        compression: Algorithm for payloads of at least ``threshold`` bytes.
        threshold: Payloads smaller than this are stored uncompressed.
        cipher: Encryption algorithm for new blobs.
        keyring: Master keys; required when ``cipher`` is not ``NONE``.
        max_value_bytes: Largest serialized value accepted on write.
    """

    __slots__ = ("_cipher", "_compression", "_keyring", "_max", "_suite", "_threshold")

    def __init__(
        self,
        *,
        compression: Compression = Compression.NONE,
        threshold: int = 1024,
        cipher: Cipher = Cipher.NONE,
        keyring: KeyRing | None = None,
        max_value_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._compression = compression
        self._threshold = threshold
        self._cipher = cipher
        self._keyring = keyring or KeyRing({})
        if cipher is not Cipher.NONE and self._keyring.active_id is None:
            raise InvalidInputError(f"cipher {cipher.name} needs at least one master key")
        self._suite = CipherSuite()
        self._max = max_value_bytes

    @property
    def keyring(self) -> KeyRing:
        """The key ring used to decrypt (and, with its active key, to encrypt)."""
        return self._keyring

    def encode(self, value: Any, aad: bytes) -> bytes:
        """Serialize, maybe compress, maybe encrypt ``value`` for the address ``aad``."""
        payload = _serialize.pack(value)
        if len(payload) > self._max:
            raise InvalidInputError(
                f"value is {len(payload)} bytes serialized, over the limit of {self._max}"
            )
        comp = Compression.NONE
        if self._compression is not Compression.NONE and len(payload) >= self._threshold:
            packed = _compress.compress(self._compression, payload)
            if len(packed) < len(payload):
                comp, payload = self._compression, packed
        if self._cipher is Cipher.NONE:
            header = _HEADER.pack(MAGIC, FORMAT, comp, Cipher.NONE, 0)
            crc = zlib.crc32(payload, zlib.crc32(aad, zlib.crc32(header)))
            return header + payload + crc.to_bytes(4, "big")
        kid = self._keyring.active_id
        assert kid is not None
        key = self._keyring.get(kid)
        assert key is not None
        header = _HEADER.pack(MAGIC, FORMAT, comp, self._cipher, kid)
        return header + self._suite.seal(self._cipher, key, payload, header + aad)

    def decode(self, blob: bytes, aad: bytes) -> Any:
        """Undo :meth:`encode`; raises CorruptDataError or DecryptError, never returns junk."""
        comp, payload = self.open(blob, aad)
        return _serialize.unpack(_compress.decompress(comp, payload))

    def open(self, blob: bytes, aad: bytes) -> tuple[int, bytes]:
        """Check and decrypt a blob; returns ``(compression id, payload)``."""
        blob = bytes(blob)
        if len(blob) < HEADER_SIZE:
            raise CorruptDataError(f"blob of {len(blob)} bytes is shorter than its header")
        magic, fmt, comp, cipher_id, kid = _HEADER.unpack_from(blob)
        if magic != MAGIC or fmt != FORMAT:
            raise CorruptDataError(f"unknown blob format (magic {magic:#x}, format {fmt})")
        header, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:]
        if cipher_id == Cipher.NONE:
            if kid != 0:  # encode() never writes this; a key id on plaintext is a forgery
                raise CorruptDataError(f"plaintext blob names key id {kid}")
            if len(body) < 4:
                raise CorruptDataError("plaintext blob is truncated")
            payload, crc = body[:-4], int.from_bytes(body[-4:], "big")
            if zlib.crc32(payload, zlib.crc32(aad, zlib.crc32(header))) != crc:
                raise CorruptDataError(
                    "checksum mismatch: corrupt data or a blob moved from another address"
                )
            return comp, payload
        try:
            cipher = Cipher(cipher_id)
        except ValueError:
            raise CorruptDataError(f"unknown cipher id {cipher_id}") from None
        key = self._keyring.get(kid)
        if key is None:
            raise DecryptError(f"blob is encrypted with key id {kid}, which is not in the key ring")
        return comp, self._suite.open(cipher, key, body, header + aad)

    def key_id_of(self, blob: bytes) -> int:
        """The master key id a blob was encrypted with (0 for plaintext)."""
        if len(blob) < HEADER_SIZE:
            raise CorruptDataError("blob is shorter than its header")
        return int(_HEADER.unpack_from(blob)[4])

    def is_current(self, blob: bytes) -> bool:
        """True when the blob already uses this codec's cipher and active key (for rotation)."""
        if len(blob) < HEADER_SIZE:
            return False
        _, _, _, cipher_id, kid = _HEADER.unpack_from(blob)
        active = self._keyring.active_id if self._cipher is not Cipher.NONE else 0
        return bool(cipher_id == self._cipher and kid == active)


__all__ = ["Cipher", "Codec", "Compression", "DecryptError", "record_aad", "session_aad"]
