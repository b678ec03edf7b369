"""msgpack serialization: keeps ``bytes`` and ``str`` apart, which JSON cannot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import CorruptDataError, InvalidInputError

_PACK_OPTIONS: dict[str, Any] = {"use_bin_type": True, "strict_types": False, "datetime": False}
# What msgpack raises for a value it cannot represent; see pack_error().
PACK_ERRORS = (TypeError, ValueError, OverflowError)


def pack_error(exc: BaseException) -> InvalidInputError:
    """The error :func:`pack` raises for ``exc``, one of :data:`PACK_ERRORS`."""
    # The message names the type only: the value itself may be key material.
    return InvalidInputError(f"value cannot be serialized: {type(exc).__name__}")


def pack(value: Any) -> bytes:
    """Serialize ``value``; anything msgpack cannot represent losslessly is invalid input."""
    try:
        return msgpack.packb(value, **_PACK_OPTIONS)  # type: ignore[no-any-return]
    except PACK_ERRORS as exc:
        raise pack_error(exc) from None


def packer() -> Callable[[Any], bytes]:
    """The raw msgpack pack function of a new Packer with :func:`pack`'s options.

    For batches: ``packb`` builds a Packer per value. The Packer has a buffer, so keep it to one
    batch (never share it between threads) and catch :data:`PACK_ERRORS` as :func:`pack` does.
    """
    return msgpack.Packer(**_PACK_OPTIONS).pack  # type: ignore[no-any-return]


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_tuples(k): v for k, v in pairs}


def unpack(data: bytes | bytearray) -> Any:
    """Deserialize bytes written by :func:`pack`; malformed input raises CorruptDataError."""
    try:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        except TypeError:
            # pack() wrote a tuple dict key as an array, which cannot key a dict as a list:
            # read it back as the tuple it was (the slow hook only runs for such values).
            return msgpack.unpackb(
                data, raw=False, strict_map_key=False, use_list=True, object_pairs_hook=_pairs
            )
    except Exception as exc:  # msgpack raises many unrelated types on garbage
        what = type(exc).__name__
        raise CorruptDataError(f"stored value is not valid msgpack ({what})") from None
