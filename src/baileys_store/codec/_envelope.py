"""The stored blob: a fixed header, then the (compressed, encrypted) msgpack payload.

Layout (format 1)::

    0      1        2            3          4..5       6..
    magic  format   compression  cipher     key id BE  body
    0xB5   1        0..3         0..2       0 = none   cipher none: payload + CRC32
                                                       otherwise: nonce + ciphertext + tag

The header and the record's address are authenticated (AEAD associated data, or the CRC for
plaintext blobs), so a reader never guesses how a blob was written and a blob copied to another
namespace, session, type or id is rejected instead of being served as the wrong value.

A codec with a cipher refuses plaintext blobs (:class:`PlaintextRecordError`): their CRC is
unkeyed, so anyone able to write a row could otherwise replace records of an encrypted store.
Only a codec built with ``allow_plaintext`` (the migration switch) reads them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from ..errors import (
    CorruptDataError,
    DecryptError,
    InvalidInputError,
    OversizeRecordError,
    PlaintextRecordError,
)
from . import _compress, _serialize
from ._ciphers import Cipher, CipherSuite
from ._compress import Compression
from ._keyring import KeyRing

MAGIC = 0xB5
FORMAT = 1
_HEADER = struct.Struct(">BBBBH")
HEADER_SIZE = _HEADER.size
# The header of an uncompressed plaintext blob, the common case of the batch fast paths, and
# its CRC (the first link of every such blob's CRC chain).
_PLAIN = _HEADER.pack(MAGIC, FORMAT, Compression.NONE, Cipher.NONE, 0)
_PLAIN_CRC = zlib.crc32(_PLAIN)


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def record_aad(
    kind: str, namespace: str, session_id: str, key_type: str = "", key_id: str = ""
) -> bytes:
    """The address bytes bound to a blob: length-prefixed so no two addresses collide."""
    return b"".join(_field(p) for p in (kind, namespace, session_id, key_type, key_id))


class SessionAad:
    """``record_aad`` for the records of one session, its prefix encoded once (hot in batches).

    Call it as ``aad(key_type, key_id)``; :meth:`for_type` gives the part shared by every key
    of one type, for :meth:`Codec.key_encoder` and :meth:`Codec.key_decoder`.
    """

    __slots__ = ("_prefix",)

    def __init__(self, kind: str, namespace: str, session_id: str) -> None:
        self._prefix = b"".join(_field(p) for p in (kind, namespace, session_id))

    def __call__(self, key_type: str, key_id: str) -> bytes:
        return self._prefix + _field(key_type) + _field(key_id)

    def for_type(self, key_type: str) -> bytes:
        """The address bytes of ``key_type``'s keys up to their id (the same for a whole batch)."""
        return self._prefix + _field(key_type)


def error_kind(exc: BaseException) -> str:
    """The ``codec_errors`` metric kind of a decode failure."""
    if isinstance(exc, PlaintextRecordError):
        return "plaintext"
    if isinstance(exc, OversizeRecordError):
        return "too_large"
    return "decrypt" if isinstance(exc, DecryptError) else "corrupt"


def session_aad(kind: str, namespace: str, session_id: str) -> SessionAad:
    """``record_aad`` for the records of one session, its prefix encoded once (hot in batches)."""
    return SessionAad(kind, namespace, session_id)


def key_aad(namespace: str, session_id: str, key_type: str, key_id: str) -> bytes:
    """The address bound to one key record's blob."""
    return record_aad("k", namespace, session_id, key_type, key_id)


def creds_aad(namespace: str, session_id: str) -> bytes:
    """The address bound to a session's creds blob."""
    return record_aad("c", namespace, session_id)


class Codec:
    """Turns values into self-describing blobs and back.

    Args:
        compression: Algorithm for payloads of at least ``threshold`` bytes.
        threshold: Payloads smaller than this are stored uncompressed.
        cipher: Encryption algorithm for new blobs.
        keyring: Master keys; required when ``cipher`` is not ``NONE``.
        max_value_bytes: Largest serialized value accepted on write, and the most a stored
            value may decompress to on read (past it :class:`OversizeRecordError`).
        allow_plaintext: With a cipher, still read plaintext blobs (migrating a plaintext store
            to encryption); without it they raise :class:`PlaintextRecordError`.
    """

    __slots__ = (
        "_cipher",
        "_compress",
        "_compression",
        "_keyring",
        "_max",
        "_plain_ok",
        "_suite",
        "_threshold",
    )

    def __init__(
        self,
        *,
        compression: Compression = Compression.NONE,
        threshold: int = 1024,
        cipher: Cipher = Cipher.NONE,
        keyring: KeyRing | None = None,
        max_value_bytes: int = 16 * 1024 * 1024,
        allow_plaintext: bool = False,
    ) -> None:
        self._compression = compression
        self._compress = _compress.compressor(compression)
        self._threshold = threshold
        self._cipher = cipher
        self._keyring = keyring or KeyRing({})
        if cipher is not Cipher.NONE and self._keyring.active_id is None:
            raise InvalidInputError(f"cipher {cipher.name} needs at least one master key")
        self._suite = CipherSuite()
        self._max = max_value_bytes
        self._plain_ok = cipher is Cipher.NONE or allow_plaintext

    @property
    def keyring(self) -> KeyRing:
        """The key ring used to decrypt (and, with its active key, to encrypt)."""
        return self._keyring

    def encode(self, value: Any, aad: bytes) -> bytes:
        """Serialize, maybe compress, maybe encrypt ``value`` for the address ``aad``."""
        return self._encode_payload(_serialize.pack(value), aad)

    def _encode_payload(self, payload: bytes, aad: bytes) -> bytes:
        """:meth:`encode` after serialization."""
        if len(payload) > self._max:
            raise InvalidInputError(
                f"value is {len(payload)} bytes serialized, over the limit of {self._max}"
            )
        comp = Compression.NONE
        if self._compress is not None and len(payload) >= self._threshold:
            packed = self._compress(payload)
            if len(packed) < len(payload):
                comp, payload = self._compression, bytes(packed)
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

    def key_encoder(self, aad_prefix: bytes) -> Callable[[str, Any], bytes]:
        """``enc(key_id, value) == encode(value, aad)`` for the keys of one batch and type.

        ``aad_prefix`` is :meth:`SessionAad.for_type`. Without a cipher, values that stay
        uncompressed (no compression, or below the threshold) are built inline with one reused
        Packer and a CRC chain started once per batch; anything else takes :meth:`encode`'s path.
        The encoder holds a Packer: use it for one batch only, never from two threads.
        """
        pack, pack_errors = _serialize.packer(), _serialize.PACK_ERRORS
        crc32, plain, limit = zlib.crc32, _PLAIN, self._max
        # Payloads this long or longer may be compressed (or are too big): the general path.
        if self._cipher is not Cipher.NONE:
            limit = -1
        elif self._compression is not Compression.NONE:
            limit = min(limit, self._threshold - 1)
        base = crc32(aad_prefix, _PLAIN_CRC)

        def enc(key_id: str, value: Any) -> bytes:
            try:
                payload = pack(value)
            except pack_errors as exc:
                raise _serialize.pack_error(exc) from None
            if len(payload) > limit:
                return self._encode_payload(payload, aad_prefix + _field(key_id))
            raw = key_id.encode("utf-8")
            crc = crc32(payload, crc32(len(raw).to_bytes(4, "big") + raw, base))
            return plain + payload + crc.to_bytes(4, "big")

        return enc

    def key_decoder(
        self, aad_prefix: bytes, max_output: int | None = None
    ) -> Callable[[str, bytes], Any]:
        """``dec(key_id, blob) == decode(blob, aad, max_output)`` for one batch and type.

        ``aad_prefix`` is :meth:`SessionAad.for_type`. An intact uncompressed plaintext blob is
        read inline; anything else (other formats, damage) goes through :meth:`decode`, which
        raises exactly the errors it always does.
        """
        crc32, unpack, plain = zlib.crc32, _serialize.unpack, _PLAIN
        base = crc32(aad_prefix, _PLAIN_CRC)
        # An encrypted store takes no plaintext shortcut: decode() refuses such blobs.
        min_size = HEADER_SIZE + 4 if self._plain_ok else 1 << 62

        def dec(key_id: str, blob: bytes) -> Any:
            if type(blob) is bytes and len(blob) >= min_size and blob.startswith(plain):
                raw = key_id.encode("utf-8")
                payload = blob[HEADER_SIZE:-4]
                crc = crc32(payload, crc32(len(raw).to_bytes(4, "big") + raw, base))
                if blob.endswith(crc.to_bytes(4, "big")):
                    return unpack(payload)
            return self.decode(blob, aad_prefix + _field(key_id), max_output)

        return dec

    def decode(self, blob: bytes, aad: bytes, max_output: int | None = None) -> Any:
        """Undo :meth:`encode`; raises CorruptDataError or DecryptError, never returns junk.

        ``max_output``: decompress at most this much (default and ceiling: ``max_value_bytes``);
        past it :class:`OversizeRecordError`. A caller on the event loop passes a small bound
        and retries a value that exceeds it in a worker thread.
        """
        comp, payload = self.open(blob, aad)
        limit = self._max if max_output is None else min(max_output, self._max)
        return _serialize.unpack(_compress.decompress(comp, payload, limit))

    def open(self, blob: bytes, aad: bytes) -> tuple[int, bytes]:
        """Check and decrypt a blob; returns ``(compression id, payload)``."""
        if type(blob) is not bytes:  # a bytes-like from a driver: slices must be bytes
            blob = bytes(blob)
        if len(blob) < HEADER_SIZE:
            raise CorruptDataError(f"blob of {len(blob)} bytes is shorter than its header")
        magic, fmt, comp, cipher_id, kid = _HEADER.unpack_from(blob)
        if magic != MAGIC or fmt != FORMAT:
            raise CorruptDataError(f"unknown blob format (magic {magic:#x}, format {fmt})")
        header, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:]
        if cipher_id == Cipher.NONE:
            if not self._plain_ok:
                raise PlaintextRecordError(
                    "plaintext record in an encrypted store (refused: anyone with write access "
                    "to the database could have written it; allow_plaintext_reads migrates)"
                )
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


__all__ = [
    "Cipher",
    "Codec",
    "Compression",
    "DecryptError",
    "OversizeRecordError",
    "PlaintextRecordError",
    "SessionAad",
    "error_kind",
    "record_aad",
    "session_aad",
]
