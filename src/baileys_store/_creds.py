"""Creds at the boundary: accept Baileys-shaped dicts or pyaileys dataclasses, check known fields.

The classic bug this catches: a ``Buffer`` that came back as ``{"type": "Buffer", "data": ...}``
or a base64 ``str`` instead of bytes. Such creds are refused on save (and on load) with an error
naming the field, never stored or handed to a client. Unknown fields pass through untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInputError

_BYTES = (bytes, bytearray, memoryview)

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


def validate_creds(d: Mapping[str, Any]) -> None:
    """Check the known fields of camelCase (Baileys, waeys) or snake_case (pyaileys) creds."""
    for camel, snake in _KEY_PAIRS:
        for name in (camel, snake):
            if d.get(name) is not None:
                _key_pair(d[name], name)
    for spk_name, kp, kid in (("signedPreKey", "keyPair", "keyId"), ("signed_pre_key", "key_pair", "key_id")):
        spk = d.get(spk_name)
        if spk is None:
            continue
        if not isinstance(spk, Mapping):
            raise _fail(spk_name, "a signed key pair {keyPair, signature, keyId}", spk)
        _key_pair(spk.get(kp), f"{spk_name}.{kp}")
        _bytes(spk, "signature", 64, f"{spk_name}.")
        key_id = spk.get(kid)
        if key_id is not None and (isinstance(key_id, bool) or not isinstance(key_id, int) or key_id < 0):
            raise _fail(f"{spk_name}.{kid}", "a non-negative int", key_id)
    for name in ("registrationId", "registration_id"):
        rid = d.get(name)
        if name in d and (isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid < 1 << 14):
            raise _fail(name, "an int in 0..16383 (14 bits)", rid)
    for name in ("advSecretKey", "adv_secret_key"):
        if name in d and not isinstance(d[name], str):
            raise _fail(name, "a base64 str", d[name])
    for name in ("routingInfo", "routing_info"):
        v = d.get(name)
        if v is not None and not isinstance(v, _BYTES):
            raise _fail(name, "bytes or None", v)
    for name in ("signalIdentities", "signal_identities"):
        ids = d.get(name)
        if ids is None:
            continue
        if not isinstance(ids, list):
            raise _fail(name, "a list", ids)
        for n, ident in enumerate(ids):
            if not isinstance(ident, Mapping):
                raise _fail(f"{name}[{n}]", "a mapping", ident)
            for key_name in ("identifierKey", "identifier_key"):
                _bytes(ident, key_name, 33, f"{name}[{n}].")
