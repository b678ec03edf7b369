"""msgpack serialization: keeps ``bytes`` and ``str`` apart, which JSON cannot."""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import CorruptDataError, InvalidInputError


def pack(value: Any) -> bytes:
    """Serialize ``value``; anything msgpack cannot represent losslessly is invalid input."""
    try:
        return msgpack.packb(value, use_bin_type=True, strict_types=False, datetime=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        # The message names the type only: the value itself may be key material.
        raise InvalidInputError(f"value cannot be serialized: {type(exc).__name__}") from None


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_tuples(k): v for k, v in pairs}


def unpack(data: bytes) -> Any:
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
