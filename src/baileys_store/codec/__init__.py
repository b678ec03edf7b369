"""The codec: msgpack, optional compression, optional authenticated encryption, one header."""

from ..errors import OversizeRecordError, PlaintextRecordError
from ._ciphers import Cipher
from ._compress import Compression
from ._envelope import Codec, creds_aad, error_kind, key_aad, record_aad, session_aad
from ._keyring import KeyRing, parse_master_key

__all__ = [
    "Cipher",
    "Codec",
    "Compression",
    "KeyRing",
    "OversizeRecordError",
    "PlaintextRecordError",
    "creds_aad",
    "error_kind",
    "key_aad",
    "parse_master_key",
    "record_aad",
    "session_aad",
]
