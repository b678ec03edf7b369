"""The value codec of ``@luoarch/baileys-store-core`` (luoarch/baileys-store-core, v1.0.0-rc).

Read from ``src/crypto/codec.ts``, ``src/crypto/index.ts``, ``src/redis/store.ts`` and
``src/mongodb/store.ts``:

* encode (``CodecService.encode``): ``JSON.stringify`` with a replacer that sorts the keys of
  plain objects; a Buffer reaches it already ``toJSON``-ed, so it is written as
  ``{"data":[n,...],"type":"Buffer"}`` (a bare Uint8Array the same; the BufferJSON base64
  form only if it came in that way); Dates as ISO strings. Then compression, chosen by config
  and **not marked in the data**: ``snappy`` (npm ``snappy`` ``compressSync``: raw snappy
  block, no framing; silently gzip when the module is missing), ``gzip`` (level 6; ``lz4``
  also means gzip) or none. So the reader tells them apart: gzip magic ``1f 8b``; else JSON
  text as is; else raw snappy.
* encryption (``CryptoService``): AES-256-GCM (also when configured as ``secretbox``), a random
  12-byte nonce, no associated data, the 16-byte tag appended to the ciphertext. The key is
  the master key string hex-decoded as Node's ``Buffer.from(s, "hex")`` does (decoding stops
  at the first bad pair, so a malformed key silently shrinks), used as is if it is 32 bytes,
  else its SHA-256. Key id: the first 16 hex digits of SHA-256(key). Disabled encryption
  leaves the plaintext, key id ``none``, empty nonce.
* Redis envelope: the value is JSON ``{"ciphertext": b64, "nonce": b64, "keyId": str,
  "schemaVersion": 1, "timestamp": iso}``.
* MongoDB field: ``base64(nonce || ciphertext+tag)``; no key id. (Unencrypted, that is the
  bare plaintext — which store-core's own reader then cuts 12 bytes off: it cannot read its
  unencrypted MongoDB data back; this reader can.)
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import json
import string
import zlib
from typing import Any

import cramjam
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import DecryptError, InvalidInputError
from .._bufferjson import b64decode, loads

NONCE = 12
TAG = 16
_HEX = set(string.hexdigits)


def derive_key(master_key: str) -> bytes:
    """The AES key store-core derives from a ``masterKey`` string."""
    raw = bytearray()
    for i in range(0, len(master_key) - 1, 2):  # Node's hex decoder: stop at the first bad pair
        pair = master_key[i : i + 2]
        if not set(pair) <= _HEX:
            break
        raw.append(int(pair, 16))
    return bytes(raw) if len(raw) == 32 else hashlib.sha256(bytes(raw)).digest()


def key_id(key: bytes) -> str:
    """store-core's id of an AES key (written in every Redis envelope)."""
    return hashlib.sha256(key).hexdigest()[:16]


def _decrypt(nonce: bytes, sealed: bytes, key: bytes, where: str) -> bytes:
    if len(nonce) != NONCE or len(sealed) < TAG:
        raise DecryptError(f"{where}: not AES-256-GCM data of store-core (nonce or tag missing)")
    try:
        return AESGCM(key).decrypt(nonce, sealed, None)
    except InvalidTag:
        raise DecryptError(f"{where}: does not decrypt with this --master-key") from None


def _decompress(data: bytes, where: str) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{where}: broken gzip data: {exc}") from None
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(data)
        except ValueError:
            pass
        else:
            return data
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception:  # cramjam raises its own DecompressionError
        raise InvalidInputError(
            f"{where}: neither JSON, gzip nor snappy (encrypted? pass --master-key)"
        ) from None


def decode(plaintext: bytes, where: str) -> Any:
    """Decompress and parse one encoded value (Buffers revived as ``bytes``)."""
    try:
        return loads(_decompress(plaintext, where), "node")
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None


def open_envelope(raw: bytes, key: bytes | None, where: str) -> Any:
    """The value inside a Redis envelope of store-core."""
    try:
        env = json.loads(raw)
        sealed = b64decode(env["ciphertext"])
        nonce = b64decode(env.get("nonce") or "")
        env_key = str(env.get("keyId", ""))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise InvalidInputError(f"{where}: not a store-core envelope") from None
    if env_key == "none":
        return decode(sealed, where)
    if key is None:
        raise DecryptError(f"{where}: encrypted (key id {env_key}); pass --master-key")
    if env_key not in ("auto", key_id(key)):
        raise DecryptError(
            f"{where}: encrypted under key id {env_key}, --master-key gives {key_id(key)}"
        )
    return decode(_decrypt(nonce, sealed, key, where), where)


def open_field(text: object, key: bytes | None, where: str) -> Any:
    """The value of one field of a store-core MongoDB document."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: not a base64 string")
    data = b64decode(text)
    if key is None:
        return decode(data, where)
    return decode(_decrypt(data[:NONCE], data[NONCE:], key, where), where)


__all__ = ["NONCE", "decode", "derive_key", "key_id", "open_envelope", "open_field"]
