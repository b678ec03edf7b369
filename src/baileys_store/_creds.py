"""Creds at the boundary: accept Baileys-shaped dicts or pyaileys dataclasses, check known fields.

The classic bug this catches: a ``Buffer`` that came back as ``{"type": "Buffer", "data": ...}``
or a base64 ``str`` instead of bytes. Such creds are refused on save (and on load) with an error
naming the field, never stored or handed to a client. Unknown fields pass through untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidInputError

_BYTES = (bytes, bytearray, memoryview)
_MAX_INT = 2**63 - 1

# (camelCase, snake_case) names of the known fields.
_KEY_PAIRS = (
    ("noiseKey", "noise_key"),
    ("pairingEphemeralKeyPair", "pairing_ephemeral_key_pair"),
    ("signedIdentityKey", "signed_identity_key"),
)


def creds_to_dict(creds: object) -> dict[str, Any]:
    """A dict view of ``creds``: a mapping as is, a dataclass via :func:`dataclasses.asdict`."""
    if dataclasses.is_dataclass(creds) and not isinstance(creds, type):
        return dataclasses.asdict(creds)
    if isinstance(creds, Mapping):
        return dict(creds)
    raise InvalidInputError(f"creds must be a dict or a dataclass, not {type(creds).__name__}")


def _fail(field: str, expected: str, got: object) -> InvalidInputError:
    if isinstance(got, Mapping) and got.get("type") == "Buffer":
        what = "a serialized Buffer dict {type, data}"
    elif isinstance(got, _BYTES):
        what = f"{len(bytes(got))} bytes"
    else:
        what = type(got).__name__
    return InvalidInputError(f"creds.{field}: expected {expected}, got {what}")


def _bytes(d: Mapping[str, Any], name: str, size: int, path: str) -> None:
    if name not in d:
        return
    v = d[name]
    if not isinstance(v, _BYTES) or len(bytes(v)) != size:
        raise _fail(f"{path}{name}", f"{size} bytes", v)


def _key_pair(v: object, path: str) -> None:
    if not isinstance(v, Mapping):
        raise _fail(path, "a key pair {public, private}", v)
    for part in ("public", "private"):
        if part not in v:
            raise InvalidInputError(f"creds.{path}.{part}: missing")
        _bytes(v, part, 32, f"{path}.")


def _int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _signed_pre_key(spk: object, name: str, kp: str, kid: str) -> None:
    if not isinstance(spk, Mapping):
        raise _fail(name, "a signed key pair {keyPair, signature, keyId}", spk)
    _key_pair(spk.get(kp), f"{name}.{kp}")
    _bytes(spk, "signature", 64, f"{name}.")
    key_id = spk.get(kid)
    if key_id is not None and not _int(key_id, 0, _MAX_INT):
        raise _fail(f"{name}.{kid}", "a non-negative int", key_id)


def _signal_identities(ids: object, name: str) -> None:
    if not isinstance(ids, list):
        raise _fail(name, "a list", ids)
    for n, ident in enumerate(ids):
        if not isinstance(ident, Mapping):
            raise _fail(f"{name}[{n}]", "a mapping", ident)
        for key_name in ("identifierKey", "identifier_key"):
            _bytes(ident, key_name, 33, f"{name}[{n}].")


# (names, check, what is expected): checked whenever the field is present.
_SCALARS: tuple[tuple[tuple[str, str], Callable[[object], bool], str], ...] = (
    (
        ("registrationId", "registration_id"),
        lambda v: _int(v, 0, (1 << 14) - 1),
        "an int in 0..16383 (14 bits)",
    ),
    (("advSecretKey", "adv_secret_key"), lambda v: isinstance(v, str), "a base64 str"),
    (
        ("routingInfo", "routing_info"),
        lambda v: v is None or isinstance(v, _BYTES),
        "bytes or None",
    ),
)


def validate_creds(d: Mapping[str, Any]) -> None:
    """Check the known fields of camelCase (Baileys, waeys) or snake_case (pyaileys) creds.

    Raises:
        InvalidInputError: a known field has the wrong shape; the message names the field.
    """
    if not isinstance(d, Mapping):
        raise InvalidInputError(f"creds must be a mapping, not {type(d).__name__}")
    for camel, snake in _KEY_PAIRS:
        for name in (camel, snake):
            if d.get(name) is not None:
                _key_pair(d[name], name)
    for spk_name, kp, kid in (
        ("signedPreKey", "keyPair", "keyId"),
        ("signed_pre_key", "key_pair", "key_id"),
    ):
        if d.get(spk_name) is not None:
            _signed_pre_key(d[spk_name], spk_name, kp, kid)
    for names, ok, expected in _SCALARS:
        for name in names:
            if name in d and not ok(d[name]):
                raise _fail(name, expected, d[name])
    for name in ("signalIdentities", "signal_identities"):
        if d.get(name) is not None:
            _signal_identities(d[name], name)
