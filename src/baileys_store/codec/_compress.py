"""Optional compression through cramjam (snappy, zstd, gzip); the id goes in the blob header.

Every decompression is bounded: a stored record may have been written by an attacker (a 64 KiB
zstd frame can claim 2 GiB), so the output size is checked against the codec's limit before
the output is allocated (snappy's length prefix, zstd's frame content size) or while it is
produced (gzip through a streaming inflater with a maximum output).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import cramjam

from ..errors import CorruptDataError, OversizeRecordError


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

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_WBITS = 31  # zlib: a gzip header and trailer


def compressor(algo: Compression) -> Callable[[bytes], Any] | None:
    """The compress function of ``algo`` (``None`` for ``NONE``), bound once by the codec.

    The result is a bytes-like buffer (``bytes(...)`` it to keep it); the functions are
    cramjam's own (or ``functools.partial`` of them): no Python frame on the write path.
    """
    if algo is Compression.SNAPPY:
        return cramjam.snappy.compress_raw
    if algo is Compression.ZSTD:
        return functools.partial(cramjam.zstd.compress, level=3)
    if algo is Compression.GZIP:
        return functools.partial(cramjam.gzip.compress, level=6)
    return None


def compress(algo: Compression, data: bytes) -> bytes:
    """Compress ``data`` with ``algo`` (``NONE`` returns it unchanged)."""
    fn = compressor(algo)
    return data if fn is None else bytes(fn(data))


def _too_large(name: str, size: int | None, limit: int) -> OversizeRecordError:
    what = "an unknown size" if size is None else f"{size} bytes"
    return OversizeRecordError(
        f"{name} data would expand to {what}, over the limit of {limit} (max_value_bytes)"
    )


def zstd_content_size(data: bytes) -> int | None:
    """The frame content size a zstd frame header declares (``None``: not declared).

    Raises CorruptDataError when ``data`` does not start with a zstd frame header.
    """
    if len(data) < 6 or not data.startswith(_ZSTD_MAGIC):
        raise CorruptDataError("zstd data has no frame header")
    fhd = data[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    if fhd & 0x08:  # reserved bit: never set by an encoder
        raise CorruptDataError("zstd frame header is malformed")
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if len(data) < pos + size:
        raise CorruptDataError("zstd frame header is truncated")
    value = int.from_bytes(data[pos : pos + size], "little")
    return value + 256 if size == 2 else value


def _zstd(data: bytes, limit: int) -> bytearray:
    size = zstd_content_size(data)
    if size is None or size > limit:  # our encoder always records the size
        raise _too_large("zstd", size, limit)
    out = bytearray(size)
    # Into a buffer of the declared size: a frame that produces more fails, never grows it.
    if cramjam.zstd.decompress_into(data, out) != size:
        raise CorruptDataError("zstd data is shorter than its frame header says")
    return out


def _snappy(data: bytes, limit: int) -> bytes:
    size = cramjam.snappy.decompress_raw_len(data)  # the length prefix, before allocating
    if size > limit:
        raise _too_large("snappy", size, limit)
    return bytes(cramjam.snappy.decompress_raw(data))


def _gzip(data: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    budget, rest = limit, data
    while True:  # one gzip member after another, as gzip readers accept
        inflater = zlib.decompressobj(_GZIP_WBITS)
        chunk = inflater.decompress(rest, budget + 1)  # never more than the budget + 1 byte
        if len(chunk) > budget:
            raise _too_large("gzip", None, limit)
        if not inflater.eof:
            raise CorruptDataError("gzip data is truncated")
        parts.append(chunk)
        budget -= len(chunk)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)


def decompress(algo_id: int, data: bytes, limit: int) -> bytes | bytearray:
    """Undo :func:`compress`, producing at most ``limit`` bytes.

    Raises:
        CorruptDataError: an unknown id or malformed data; :class:`OversizeRecordError` (a
            subclass) when the output would pass ``limit``, before allocating it.
    """
    if algo_id == 0:  # Compression.NONE, the common case: skip the enum lookup
        return data
    try:
        algo = Compression(algo_id)
    except ValueError:
        raise CorruptDataError(f"unknown compression id {algo_id}") from None
    try:
        if algo is Compression.SNAPPY:
            return _snappy(data, limit)
        if algo is Compression.ZSTD:
            return _zstd(data, limit)
        if algo is Compression.GZIP:
            return _gzip(data, limit)
    except CorruptDataError:
        raise
    except Exception as exc:  # cramjam raises its own DecompressionError, zlib its error
        name = algo.name.lower()
        raise CorruptDataError(f"{name} data is corrupt ({type(exc).__name__})") from None
    return data
