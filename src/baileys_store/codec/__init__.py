"""The codec: msgpack, optional compression, optional authenticated encryption, one header."""

from ..errors import OversizeRecordError, PlaintextRecordError
from ._ciphers import Cipher
from ._compress import Compression
from ._envelope import Codec, error_kind, record_aad, session_aad
from ._keyring import KeyRing, parse_master_key

__all__ = [
    "Cipher",
    "Codec",
    "Compression",
    "KeyRing",
    "OversizeRecordError",
    "PlaintextRecordError",
    "error_kind",
    "parse_master_key",
    "record_aad",
    "session_aad",
]
