"""Optional compression through cramjam (snappy, zstd, gzip); the id goes in the blob header."""

from __future__ import annotations

from enum import IntEnum

import cramjam

from ..errors import CorruptDataError


class Compression(IntEnum):
    """Compression ids stored in the blob header. Never renumber: stored data depends on them."""

    NONE = 0
    SNAPPY = 1
    ZSTD = 2
    GZIP = 3


NAMES: dict[str, Compression] = {
    "none": Compression.NONE,
    "snappy": Compression.SNAPPY,
    "zstd": Compression.ZSTD,
    "gzip": Compression.GZIP,
}


def compress(algo: Compression, data: bytes) -> bytes:
    """Compress ``data`` with ``algo`` (``NONE`` returns it unchanged)."""
    if algo is Compression.SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if algo is Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=3))
    if algo is Compression.GZIP:
        return bytes(cramjam.gzip.compress(data, level=6))
    return data


def decompress(algo_id: int, data: bytes) -> bytes:
    """Undo :func:`compress`; an unknown id or malformed data raises CorruptDataError."""
    if algo_id == 0:  # Compression.NONE, the common case: skip the enum lookup
        return data
    try:
        algo = Compression(algo_id)
    except ValueError:
        raise CorruptDataError(f"unknown compression id {algo_id}") from None
    try:
        if algo is Compression.SNAPPY:
            return bytes(cramjam.snappy.decompress_raw(data))
        if algo is Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(data))
        if algo is Compression.GZIP:
            return bytes(cramjam.gzip.decompress(data))
    except Exception as exc:  # cramjam raises its own DecompressionError and others
        name = algo.name.lower()
        raise CorruptDataError(f"{name} data is corrupt ({type(exc).__name__})") from None
    return data
