"""Baileys' ``BufferJSON``: JSON where a Buffer is ``{"type": "Buffer", "data": "<base64>"}``.

Two flavours of the same format:

* ``node`` — what Node Baileys' ``useMultiFileAuthState`` writes: ``JSON.stringify`` with
  ``BufferJSON.replacer`` (compact, keys in insertion order, non-ASCII kept as is). Its reviver
  also turns ``{"0": 4, "1": 5}`` objects (a ``Uint8Array`` serialized without the replacer)
  into Buffers.
* ``pyaileys`` — what pyaileys' ``MultiFileAuthState`` writes: ``json.dumps`` with
  ``sort_keys=True`` (creds with ``indent=2``), ASCII-escaped; its reader revives only the
  base64 form.

Both readers here also accept ``{"type": "Buffer", "data": [4, 5]}`` (the form other stores
wrote, which Baileys' own reader leaves as an object). Revived Buffers become ``bytes``; every
other value stays what ``json`` makes of it, so writing it back gives the same JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any, Literal

from ..errors import InvalidInputError

Flavour = Literal["node", "pyaileys"]
FLAVOURS: tuple[Flavour, ...] = ("node", "pyaileys")

_B64_JUNK = re.compile(r"[^A-Za-z0-9+/]")
_URLSAFE = str.maketrans("-_", "+/")


def b64decode(text: str) -> bytes:
    """Decode base64 as Node's ``Buffer.from(text, "base64")`` does.

    Strict input is decoded strictly; otherwise, like Node, the URL-safe alphabet is accepted,
    anything after the first ``=`` and characters outside the alphabet are ignored, and missing
    padding is tolerated.
    """
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        pass
    core = _B64_JUNK.sub("", text.translate(_URLSAFE).split("=", 1)[0])
    if len(core) % 4 == 1:  # a lone trailing sextet carries no whole byte
        core = core[:-1]
    return base64.b64decode(core + "=" * (-len(core) % 4))


def _byte_values(values: list[Any]) -> bytes | None:
    if all(type(v) is int and 0 <= v <= 255 for v in values):
        return bytes(values)
    return None


def _buffer(obj: dict[str, Any]) -> bytes | dict[str, Any]:
    """The ``{"type": "Buffer", "data": ...}`` forms both flavours revive."""
    if obj.get("type") != "Buffer":
        return obj
    data = obj.get("data")
    if isinstance(data, str):
        return b64decode(data)
    if isinstance(data, list) and obj.keys() == {"type", "data"}:
        revived = _byte_values(data)
        if revived is None:
            raise InvalidInputError("a number-array Buffer holds a value outside 0..255")
        return revived
    return obj


def _node_hook(obj: dict[str, Any]) -> Any:
    revived = _buffer(obj)
    if revived is not obj or not obj:
        return revived
    # A serialized Uint8Array: canonical integer keys with byte values (Baileys revives these).
    if all(k.isdigit() and k.isascii() and (k == "0" or k[0] != "0") for k in obj):
        values = [obj[k] for k in sorted(obj, key=int)]
        as_bytes = _byte_values(values)
        if as_bytes is not None:
            return as_bytes
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_HOOKS: dict[Flavour, Callable[[dict[str, Any]], Any]] = {"node": _node_hook, "pyaileys": _buffer}


def loads(text: str | bytes, flavour: Flavour) -> Any:
    """Parse one file of a ``flavour`` folder, reviving Buffers as ``bytes``.

    Raises:
        InvalidInputError: not JSON (or ``NaN``/``Infinity``), or a malformed Buffer.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")  # json.loads would guess UTF-16/32; Node never does
        except UnicodeDecodeError as exc:  # its message would quote the byte: keep it out
            raise InvalidInputError(f"not UTF-8 (at byte {exc.start})") from None
    try:
        return json.loads(text, object_hook=_HOOKS[flavour], parse_constant=_reject_constant)
    except InvalidInputError:
        raise
    except (ValueError, binascii.Error) as exc:  # JSONDecodeError: position only, no content
        raise InvalidInputError(f"not valid BufferJSON: {exc}") from None


def _default(obj: object) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"type": "Buffer", "data": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(f"{type(obj).__name__} has no JSON form")


def dumps(value: Any, flavour: Flavour, *, creds: bool = False) -> str:
    """Serialize ``value`` the way ``flavour``'s own writer does (``creds``: the creds file).

    Raises:
        InvalidInputError: the value has no JSON form (e.g. NaN, or a set).
    """
    try:
        if flavour == "node":
            return json.dumps(
                value, default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
        return json.dumps(
            value, default=_default, sort_keys=True, indent=2 if creds else None, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"value cannot be written as BufferJSON: {exc}") from None
