"""The codec: lossless round trips, address binding, the key ring.

Every combination of compression (with threshold 0 and the default) and cipher is exercised on
the value shapes Baileys and pyaileys store (the shared BAILEYS-DATA.md brief) and on generic
msgpack-able values. Equality is strict about types: ``bytes`` must come back as ``bytes`` and
``str`` as ``str`` (pyaileys checks ``isinstance(v, bytes)`` for sessions and sender keys).
"""

from __future__ import annotations

import base64
import itertools
import math
import secrets
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baileys_store import errors
from baileys_store.codec import Cipher, Codec, Compression, KeyRing, record_aad
from baileys_store.codec._envelope import HEADER_SIZE

KEY_1 = secrets.token_bytes(32)
KEY_2 = secrets.token_bytes(32)
KEY_3 = secrets.token_bytes(32)
THRESHOLDS = (0, 1024)
CIPHERS = tuple(Cipher)
COMBOS = list(itertools.product(Compression, THRESHOLDS, CIPHERS))
AAD = record_aad("k", "clinic-1", "5511999", "session", "1234.0")
FAST = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def make_codec(
    compression: Compression = Compression.NONE,
    threshold: int = 1024,
    cipher: Cipher = Cipher.NONE,
    keys: dict[int, bytes] | None = None,
    active: int | None = None,
    max_value_bytes: int = 16 * 1024 * 1024,
) -> Codec:
    """A codec; ciphers get the key ring ``{1: KEY_1}`` unless ``keys`` is given."""
    if keys is None:
        keys = {1: KEY_1} if cipher is not Cipher.NONE else {}
    return Codec(
        compression=compression,
        threshold=threshold,
        cipher=cipher,
        keyring=KeyRing(keys, active),
        max_value_bytes=max_value_bytes,
    )


def combo_id(combo: tuple[Compression, int, Cipher]) -> str:
    comp, threshold, cipher = combo
    return f"{comp.name.lower()}-t{threshold}-{cipher.name.lower()}"


def same(expected: Any, actual: Any) -> bool:
    """Strict equality: same types all the way down (bytes-likes and tuples normalised)."""
    if isinstance(expected, (bytearray, memoryview)):
        expected = bytes(expected)
    if isinstance(expected, tuple):
        expected = list(expected)
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(map(same, expected, actual))
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            same(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


# --- value shapes --------------------------------------------------------------------------

_jid_user = st.text(string.digits, min_size=5, max_size=15)
_device_jid = st.builds(
    lambda u, d, server: f"{u}:{d}@{server}" if d else f"{u}@{server}",
    _jid_user,
    st.integers(0, 99),
    st.sampled_from(["s.whatsapp.net", "lid", "c.us"]),
)
_session_id = st.builds(lambda u, d: f"{u}.{d}", _jid_user, st.integers(0, 99))
key_pair = st.fixed_dictionaries(
    {"public": st.binary(min_size=32, max_size=32), "private": st.binary(min_size=32, max_size=32)}
)
sender_key_memory = st.dictionaries(st.one_of(_device_jid, _session_id), st.booleans(), max_size=20)
app_state_version = st.fixed_dictionaries(
    {
        "version": st.integers(0, 2**53),
        "hash": st.binary(min_size=128, max_size=128),
        "indexValueMap": st.dictionaries(
            st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
            st.binary(min_size=32, max_size=32),
            max_size=40,
        ),
    }
)
tctoken = st.fixed_dictionaries(
    {"token": st.binary(max_size=64), "timestamp": st.integers(0, 2**32).map(str)}
)
# Compressible payloads big enough to pass the default threshold.
repeated_bytes = st.builds(
    lambda b, n: b * n, st.binary(min_size=1, max_size=16), st.integers(1, 400)
)
# Baileys' libsignal session JSON: nested dicts of str/int/bool/None and base64 strings.
signal_json: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=40)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
baileys_values: st.SearchStrategy[Any] = st.one_of(
    st.binary(max_size=2048),
    repeated_bytes,
    key_pair,
    sender_key_memory,
    app_state_version,
    tctoken,
    st.text(max_size=300),
    st.lists(_device_jid, max_size=30),
    signal_json,
    st.dictionaries(st.text(max_size=8), st.one_of(st.booleans(), st.none()), max_size=8),
    st.lists(st.one_of(st.booleans(), st.none(), st.binary(max_size=8)), max_size=8),
)
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=50),
        st.binary(max_size=50),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.binary(max_size=10), st.integers(-1000, 1000)),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=40,
)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@FAST
@given(value=baileys_values)
def test_baileys_values_round_trip(combo: tuple[Compression, int, Cipher], value: Any) -> None:
    codec = make_codec(*combo)
    blob = codec.encode(value, AAD)
    assert same(value, codec.decode(blob, AAD))
    # A second codec with the same settings (a restarted process) reads it too.
    assert same(value, make_codec(*combo).decode(blob, AAD))


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@FAST
@given(value=msgpack_values)
def test_generic_values_round_trip(combo: tuple[Compression, int, Cipher], value: Any) -> None:
    codec = make_codec(*combo)
    assert same(value, codec.decode(codec.encode(value, AAD), AAD))


def test_bytes_and_str_stay_apart() -> None:
    value = {
        "b": b"abc",
        "s": "abc",
        "l": [b"", "", bytearray(b"x"), memoryview(b"y")],
        b"k": 1,
        2: (True, None, False),
    }
    out = make_codec().decode(make_codec().encode(value, AAD), AAD)
    assert out == {
        "b": b"abc",
        "s": "abc",
        "l": [b"", "", b"x", b"y"],
        b"k": 1,
        2: [True, None, False],
    }
    assert type(out["b"]) is bytes
    assert type(out["s"]) is str
    assert [type(x) for x in out["l"]] == [bytes, str, bytes, bytes]
    assert out[2][0] is True
    assert out[2][1] is None


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("comp", list(Compression))
def test_header_records_how_the_blob_was_written(comp: Compression, cipher: Cipher) -> None:
    big = b"0123456789" * 500  # compressible, over the default threshold
    small = b"0123456789" * 10
    codec = make_codec(comp, 1024, cipher)
    big_blob, small_blob = codec.encode(big, AAD), codec.encode(small, AAD)
    assert big_blob[0] == 0xB5
    assert big_blob[1] == 1
    assert big_blob[2] == comp  # compressed: it shrinks
    assert small_blob[2] == Compression.NONE  # under the threshold
    assert big_blob[3] == small_blob[3] == cipher
    assert int.from_bytes(big_blob[4:6], "big") == (1 if cipher else 0)
    if comp is not Compression.NONE:
        assert len(big_blob) < len(big) // 5
    # Incompressible data is stored uncompressed even above the threshold.
    noise = make_codec(comp, 0, cipher).encode(secrets.token_bytes(4096), AAD)
    assert noise[2] == Compression.NONE


def test_encrypted_blobs_do_not_contain_the_plaintext() -> None:
    secret = secrets.token_bytes(64)
    for cipher in (Cipher.AES_256_GCM, Cipher.XSALSA20_POLY1305):
        blob1 = make_codec(cipher=cipher).encode(secret, AAD)
        blob2 = make_codec(cipher=cipher).encode(secret, AAD)
        assert secret[:16] not in blob1
        assert blob1 != blob2  # random nonces


def test_value_size_limit() -> None:
    codec = make_codec(max_value_bytes=2000)
    at_limit = b"x" * (2000 - 3)  # bin16 header: 3 bytes
    assert codec.decode(codec.encode(at_limit, AAD), AAD) == at_limit
    with pytest.raises(errors.InvalidInputError, match="2001 bytes"):
        codec.encode(at_limit + b"x", AAD)


class _Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        _Opaque(),
        datetime.now(UTC),
        2**64,
        -(2**63) - 1,
        "\ud800",
        {"k": frozenset()},
        [complex(1, 2)],
    ],
    ids=[
        "set",
        "object",
        "datetime",
        "uint64-overflow",
        "int64-underflow",
        "lone-surrogate",
        "nested-frozenset",
        "complex",
    ],
)
def test_unserializable_values_are_invalid_input(value: object) -> None:
    with pytest.raises(errors.InvalidInputError) as exc_info:
        make_codec().encode(value, AAD)
    assert "_Opaque" not in str(exc_info.value)
    assert "\\ud800" not in str(exc_info.value)


def test_circular_value_is_invalid_input() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(errors.InvalidInputError):
        make_codec().encode(loop, AAD)


# --- address binding -----------------------------------------------------------------------

Address = tuple[str, str, str, str, str]
ADDRESSES: list[tuple[Address, Address]] = [
    # Length-prefix ambiguity: the same characters split differently between fields.
    (("k", "ab", "c", "t", "i"), ("k", "a", "bc", "t", "i")),
    (("k", "ns", "ab", "c", "i"), ("k", "ns", "a", "bc", "i")),
    (("k", "ns", "s", "pre-key", "1"), ("k", "ns", "s", "pre-key1", "")),
    (("k", "ns", "s", "pre-key", "12"), ("k", "ns", "s", "pre-key1", "2")),
    (("kn", "s", "s", "t", "i"), ("k", "ns", "s", "t", "i")),
    (("k", "ns", "s", "session", ""), ("k", "ns", "s", "", "session")),
    (("k", "", "x", "t", "i"), ("k", "x", "", "t", "i")),
    (("k", "é", "s", "t", "i"), ("k", "e", "s", "t", "i")),
    # One field different.
    (("k", "ns", "s", "", ""), ("c", "ns", "s", "", "")),
    (("k", "ns", "s", "session", "1.0"), ("c", "ns", "s", "session", "1.0")),
    (("k", "tenant-a", "s", "t", "1"), ("k", "tenant-b", "s", "t", "1")),
    (("k", "ns", "5511", "t", "1"), ("k", "ns", "5512", "t", "1")),
    (("k", "ns", "s", "session", "1"), ("k", "ns", "s", "sender-key", "1")),
    (("k", "ns", "s", "pre-key", "1"), ("k", "ns", "s", "pre-key", "2")),
    (("k", "ns", "s", "pre-key", "1"), ("k", "ns", "s", "pre-key", "1 ")),
]


def expected_error(cipher: Cipher) -> type[errors.StoreError]:
    return errors.CorruptDataError if cipher is Cipher.NONE else errors.DecryptError


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize(("written", "read"), ADDRESSES)
def test_blob_is_bound_to_its_address(cipher: Cipher, written: Address, read: Address) -> None:
    codec = make_codec(Compression.SNAPPY, 0, cipher)
    value = {"public": b"p" * 32, "private": b"q" * 32}
    for a, b in ((written, read), (read, written)):
        blob = codec.encode(value, record_aad(*a))
        assert codec.decode(blob, record_aad(*a)) == value
        with pytest.raises(expected_error(cipher)):
            codec.decode(blob, record_aad(*b))


addresses = st.tuples(st.sampled_from(["k", "c"]), *(st.text(max_size=6) for _ in range(4)))


@pytest.mark.parametrize("cipher", CIPHERS)
@FAST
@given(written=addresses, read=addresses)
def test_blob_fails_under_any_other_address(
    cipher: Cipher, written: Address, read: Address
) -> None:
    codec = make_codec(cipher=cipher)
    blob = codec.encode(b"record", record_aad(*written))
    if written == read:
        assert codec.decode(blob, record_aad(*read)) == b"record"
    else:
        with pytest.raises(expected_error(cipher)):
            codec.decode(blob, record_aad(*read))


@settings(max_examples=300, deadline=None, database=None)
@given(a=addresses, b=addresses)
def test_record_aad_is_injective(a: Address, b: Address) -> None:
    assert (record_aad(*a) == record_aad(*b)) == (a == b)


# --- key ring ------------------------------------------------------------------------------

ENCRYPTING = [Cipher.AES_256_GCM, Cipher.XSALSA20_POLY1305]


@pytest.mark.parametrize("cipher", ENCRYPTING)
def test_newest_key_encrypts_unless_active_is_set(cipher: Cipher) -> None:
    keys = {2: KEY_2, 7: KEY_3, 1: KEY_1}
    codec = make_codec(cipher=cipher, keys=keys)
    assert codec.keyring.active_id == 7
    blob = codec.encode(b"v", AAD)
    assert codec.key_id_of(blob) == 7
    pinned = make_codec(cipher=cipher, keys=keys, active=1)
    old = pinned.encode(b"v", AAD)
    assert pinned.key_id_of(old) == 1
    assert pinned.is_current(old)
    assert not pinned.is_current(blob)
    # Each reads the other's blobs: every key in the ring decrypts.
    assert codec.decode(old, AAD) == pinned.decode(blob, AAD) == b"v"


@pytest.mark.parametrize("cipher", ENCRYPTING)
def test_rotation_keeps_old_blobs_readable_until_their_key_is_removed(cipher: Cipher) -> None:
    v1 = make_codec(cipher=cipher, keys={1: KEY_1})
    old = v1.encode({"token": b"t", "timestamp": "1"}, AAD)
    v2 = make_codec(cipher=cipher, keys={1: KEY_1, 2: KEY_2})
    assert v2.decode(old, AAD) == {"token": b"t", "timestamp": "1"}
    assert v2.key_id_of(old) == 1
    assert not v2.is_current(old)
    new = v2.encode(v2.decode(old, AAD), AAD)  # what a rotate command does
    assert v2.key_id_of(new) == 2
    assert v2.is_current(new)
    only_2 = make_codec(cipher=cipher, keys={2: KEY_2})
    assert only_2.decode(new, AAD) == {"token": b"t", "timestamp": "1"}
    with pytest.raises(errors.DecryptError, match=r"key id 1\b"):
        only_2.decode(old, AAD)
    # Same id, different key material: authentication fails, never garbage.
    with pytest.raises(errors.DecryptError):
        make_codec(cipher=cipher, keys={1: KEY_2}).decode(old, AAD)


def test_header_cipher_id_decides_how_a_blob_is_read() -> None:
    ring = {1: KEY_1}
    gcm = make_codec(cipher=Cipher.AES_256_GCM, keys=ring)
    box = make_codec(cipher=Cipher.XSALSA20_POLY1305, keys=ring)
    plain = make_codec(keys=ring)
    for writer, reader in itertools.permutations((gcm, box, plain), 2):
        if reader is plain or writer is not plain:
            assert reader.decode(writer.encode([1, b"2"], AAD), AAD) == [1, b"2"]
    # An encrypted codec refuses plaintext blobs (issue 12): their CRC is unkeyed.
    for reader in (gcm, box):
        with pytest.raises(errors.DecryptError, match="plaintext record in an encrypted store"):
            reader.decode(plain.encode([1, b"2"], AAD), AAD)
    # A plaintext codec without keys cannot read encrypted blobs: an error, not "not found".
    with pytest.raises(errors.DecryptError, match="key id 1"):
        make_codec().decode(gcm.encode(b"v", AAD), AAD)


def test_plaintext_blobs_stay_readable_after_turning_encryption_on() -> None:
    old = make_codec().encode(b"v", AAD)
    enc = make_codec(cipher=Cipher.AES_256_GCM)
    with pytest.raises(errors.DecryptError, match="plaintext record"):
        enc.decode(old, AAD)  # only with the migration switch:
    migrating = Codec(cipher=Cipher.AES_256_GCM, keyring=KeyRing({1: KEY_1}), allow_plaintext=True)
    assert migrating.decode(old, AAD) == b"v"
    assert enc.key_id_of(old) == 0
    assert not enc.is_current(old)  # so a rotation re-encrypts it
    assert make_codec().is_current(old)
    assert not make_codec().is_current(enc.encode(b"v", AAD))


def test_key_id_of_and_is_current_on_short_blobs() -> None:
    codec = make_codec(cipher=Cipher.AES_256_GCM)
    with pytest.raises(errors.CorruptDataError):
        codec.key_id_of(b"\xb5\x01")
    assert not codec.is_current(b"")
    assert HEADER_SIZE == 6


@pytest.mark.parametrize(
    ("keys", "active"),
    [
        ({0: KEY_1}, None),
        ({65536: KEY_1}, None),
        ({1: KEY_1[:31]}, None),
        ({1: KEY_1 + b"\0"}, None),
        ({1: KEY_1}, 2),
        ({}, 1),
    ],
)
def test_bad_key_rings_are_config_errors(keys: dict[int, bytes], active: int | None) -> None:
    with pytest.raises(errors.ConfigError) as exc_info:
        KeyRing(keys, active)
    assert KEY_1.hex() not in str(exc_info.value)


def test_key_ring_never_shows_keys() -> None:
    ring = KeyRing({1: KEY_1, 2: KEY_2})
    assert repr(ring) == "KeyRing(ids=[1, 2], active=2)"
    assert ring.ids == frozenset({1, 2})
    assert ring.get(3) is None
    assert not KeyRing({})


@pytest.mark.parametrize("cipher", ENCRYPTING)
def test_cipher_without_keys_is_refused(cipher: Cipher) -> None:
    with pytest.raises(errors.InvalidInputError, match="master key"):
        Codec(cipher=cipher)
