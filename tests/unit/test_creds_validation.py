"""Creds validation: real Baileys and pyaileys creds pass; a known field of the wrong shape fails
with an error naming the field (and not showing the value); unknown fields pass through."""

from __future__ import annotations

import base64
import copy
import os
from dataclasses import dataclass
from typing import Any

import pytest
from pyaileys.auth.serde import creds_from_dict
from pyaileys.auth.utils import init_auth_creds

from baileys_store._creds import creds_to_dict, validate_creds
from baileys_store.codec import Codec, record_aad
from baileys_store.errors import InvalidInputError
from tests.creds_data import key_pair
from tests.creds_data import node_creds as shared_node_creds

Path = tuple[str | int, ...]
SECRET = os.urandom(32)
B64 = base64.b64encode(SECRET).decode()


def _pair() -> dict[str, bytes]:
    return key_pair()


def node_creds() -> dict[str, Any]:
    """Baileys-shaped creds with every known field."""
    return shared_node_creds()


def pyaileys_creds() -> dict[str, Any]:
    """Fresh pyaileys creds as a dict, with a paired device's signal identity added."""
    creds = init_auth_creds()
    creds.signal_identities = [
        {
            "identifier": {"name": "1234:12@lid", "deviceId": 0},
            "identifierKey": b"\x05" + os.urandom(32),
        }
    ]
    creds.routing_info = os.urandom(8)
    return creds_to_dict(creds)


def put(d: Any, path: Path, value: Any) -> None:
    for step in path[:-1]:
        d = d[step]
    d[path[-1]] = value


def remove(d: Any, path: Path) -> None:
    for step in path[:-1]:
        d = d[step]
    del d[path[-1]]


def field_name(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


# --- what passes ---------------------------------------------------------------------------


def test_baileys_creds_pass() -> None:
    validate_creds(node_creds())


def test_pyaileys_creds_pass_and_survive_the_codec() -> None:
    creds = init_auth_creds()
    as_dict = creds_to_dict(creds)
    validate_creds(as_dict)
    assert isinstance(as_dict["noise_key"]["public"], bytes)
    validate_creds(pyaileys_creds())
    codec = Codec()
    aad = record_aad("c", "ns", "s")
    back = codec.decode(codec.encode(as_dict, aad), aad)
    validate_creds(back)
    assert creds_from_dict(back) == creds


def test_unknown_fields_pass_through_untouched() -> None:
    creds = node_creds()
    creds["futureField"] = {"type": "Buffer", "data": B64}  # not ours to judge
    creds["account"] = "CgQIAhAB"  # protobuf as base64, as Baileys stores it
    creds["nested"] = [1, "two", b"\x03", None, {"deep": True}]
    before = copy.deepcopy(creds)
    validate_creds(creds)
    assert creds == before
    validate_creds({})
    validate_creds({"somethingElse": 1})


def test_other_bytes_likes_and_empty_optionals_pass() -> None:
    creds = node_creds()
    creds["noiseKey"] = {"public": bytearray(32), "private": memoryview(bytes(32))}
    creds["signedIdentityKey"] = None
    creds["routingInfo"] = None
    creds["signalIdentities"] = None
    creds["registrationId"] = 0
    del creds["signedPreKey"]["keyId"]
    validate_creds(creds)


# --- what fails ----------------------------------------------------------------------------

BUFFER_DICT = {"type": "Buffer", "data": B64}
KEY_PAIRS = ["noiseKey", "pairingEphemeralKeyPair", "signedIdentityKey", "signedPreKey.keyPair"]
BAD_KEY_PARTS: list[tuple[str, Any]] = [
    ("public", BUFFER_DICT),
    ("private", BUFFER_DICT),
    ("public", {"type": "Buffer", "data": list(SECRET)}),
    ("public", B64),
    ("private", SECRET.hex()),
    ("public", SECRET[:31]),
    ("private", SECRET[:31]),
    ("public", b"\x05" + SECRET),  # the 0x05-prefixed signal form
    ("public", None),
    ("private", list(SECRET)),
]


def _split(dotted: str) -> Path:
    return tuple(dotted.split("."))


CAMEL_CASES: list[tuple[Path, Any]] = [
    *(((*_split(kp), part), bad) for kp in KEY_PAIRS for part, bad in BAD_KEY_PARTS),
    *((_split(kp), bad) for kp in KEY_PAIRS for bad in (BUFFER_DICT, B64, SECRET, [1], {})),
    (("signedPreKey",), "x"),
    (("signedPreKey",), {"signature": os.urandom(64), "keyId": 1}),
    (("signedPreKey", "signature"), os.urandom(63)),
    (("signedPreKey", "signature"), os.urandom(65)),
    (("signedPreKey", "signature"), BUFFER_DICT),
    (("signedPreKey", "signature"), base64.b64encode(os.urandom(64)).decode()),
    (("signedPreKey", "keyId"), -1),
    (("signedPreKey", "keyId"), "1"),
    (("signedPreKey", "keyId"), True),
    (("signedPreKey", "keyId"), 1.0),
    (("registrationId",), 16384),
    (("registrationId",), -1),
    (("registrationId",), True),
    (("registrationId",), False),
    (("registrationId",), "12345"),
    (("registrationId",), 123.0),
    (("registrationId",), None),
    (("advSecretKey",), SECRET),
    (("advSecretKey",), BUFFER_DICT),
    (("advSecretKey",), None),
    (("routingInfo",), B64),
    (("routingInfo",), BUFFER_DICT),
    (("routingInfo",), list(SECRET)),
    (("signalIdentities",), "x"),
    (("signalIdentities",), {"0": {}}),
    (("signalIdentities", 0), "x"),
    (("signalIdentities", 0, "identifierKey"), SECRET),  # 32 bytes: the 0x05 prefix is missing
    (("signalIdentities", 0, "identifierKey"), BUFFER_DICT),
    (("signalIdentities", 0, "identifierKey"), base64.b64encode(b"\x05" + SECRET).decode()),
]
MISSING: list[Path] = [(*_split(kp), part) for kp in KEY_PAIRS for part in ("public", "private")]

SNAKE = {
    "noiseKey": "noise_key",
    "pairingEphemeralKeyPair": "pairing_ephemeral_key_pair",
    "signedIdentityKey": "signed_identity_key",
    "signedPreKey": "signed_pre_key",
    "keyPair": "key_pair",
    "keyId": "key_id",
    "registrationId": "registration_id",
    "advSecretKey": "adv_secret_key",
    "routingInfo": "routing_info",
    "signalIdentities": "signal_identities",
}


def snake(path: Path) -> Path:
    return tuple(SNAKE.get(p, p) if isinstance(p, str) else p for p in path)


def _leaks(message: str, value: Any) -> bool:
    return (
        B64 in message
        or SECRET.hex() in message
        or repr(SECRET)[2:30] in message
        or (isinstance(value, str) and len(value) > 8 and value in message)
    )


def _check_rejected(creds: dict[str, Any], path: Path, value: Any) -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        validate_creds(creds)
    message = str(exc_info.value)
    assert field_name(path) in message, message
    assert not _leaks(message, value), message


@pytest.mark.parametrize(("path", "value"), CAMEL_CASES, ids=repr)
def test_wrong_shape_in_baileys_creds(path: Path, value: Any) -> None:
    creds = node_creds()
    put(creds, path, value)
    _check_rejected(creds, path, value)


@pytest.mark.parametrize(("path", "value"), CAMEL_CASES, ids=repr)
def test_wrong_shape_in_pyaileys_creds(path: Path, value: Any) -> None:
    creds = pyaileys_creds()
    put(creds, snake(path), value)
    _check_rejected(creds, snake(path), value)


@pytest.mark.parametrize("path", MISSING, ids=repr)
def test_missing_half_of_a_key_pair(path: Path) -> None:
    for creds, p in ((node_creds(), path), (pyaileys_creds(), snake(path))):
        remove(creds, p)
        with pytest.raises(InvalidInputError, match=rf"{field_name(p)}: missing"):
            validate_creds(creds)


@pytest.mark.parametrize("creds", [None, "creds", [("noiseKey", None)]])
def test_creds_must_be_a_mapping(creds: Any) -> None:
    with pytest.raises(InvalidInputError, match="creds must be a mapping"):
        validate_creds(creds)


def test_buffer_dict_is_described_as_such() -> None:
    creds = node_creds()
    creds["noiseKey"]["public"] = BUFFER_DICT
    with pytest.raises(InvalidInputError, match=r"noiseKey\.public.*serialized Buffer dict"):
        validate_creds(creds)
    creds = node_creds()
    creds["signedPreKey"]["signature"] = os.urandom(63)
    with pytest.raises(InvalidInputError, match=r"signature: expected 64 bytes, got 63 bytes"):
        validate_creds(creds)


# --- creds_to_dict -------------------------------------------------------------------------


@dataclass
class _Small:
    registration_id: int


def test_creds_to_dict() -> None:
    d = node_creds()
    out = creds_to_dict(d)
    assert out == d
    assert out is not d
    assert creds_to_dict(_Small(5)) == {"registration_id": 5}
    for bad in (None, "creds", [("a", 1)], 5, _Small):
        with pytest.raises(InvalidInputError, match="creds must be a dict or a dataclass"):
            creds_to_dict(bad)
