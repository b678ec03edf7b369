"""Fuzzing the codec: a damaged or forged blob is always a typed error, never a wrong value.

For every compression x cipher combination: truncation at every offset, every single-bit flip,
random garbage, and each header field set to a wrong value must raise DecryptError or
CorruptDataError (nothing else, and never a value). Plaintext blobs are also forged with a valid
CRC (so only the layer under it can notice) around corrupt compressed data and invalid msgpack.
"""

from __future__ import annotations

import itertools
import secrets
import struct
import zlib
from typing import Any

import cramjam
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baileys_store import errors
from baileys_store.codec import Cipher, Codec, Compression, KeyRing, _compress, record_aad
from baileys_store.codec._ciphers import CipherSuite
from baileys_store.codec._envelope import FORMAT, HEADER_SIZE, MAGIC

KEY_1 = secrets.token_bytes(32)
KEY_2 = secrets.token_bytes(32)
AAD = record_aad("k", "tenant", "5511999", "pre-key", "17")
COMBOS = list(itertools.product(Compression, Cipher))
REJECT = (errors.DecryptError, errors.CorruptDataError)
# Small, compressible (so every compression really applies at threshold 0), Baileys-shaped.
VALUE: dict[str, Any] = {"public": b"\x05" * 32, "private": b"\x07" * 32, "n": [1, "a", None]}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def combo_id(combo: tuple[Compression, Cipher]) -> str:
    return f"{combo[0].name.lower()}-{combo[1].name.lower()}"


def make_codec(comp: Compression, cipher: Cipher) -> Codec:
    """A reader that holds keys 1 and 2 (so a wrong key id can still name a known key)."""
    keys = {1: KEY_1, 2: KEY_2}
    return Codec(compression=comp, threshold=0, cipher=cipher, keyring=KeyRing(keys, 1))


def assert_rejected(codec: Codec, blob: bytes, aad: bytes = AAD) -> None:
    """Decoding ``blob`` raises one of the two data errors; any other outcome fails."""
    try:
        value = codec.decode(blob, aad)
    except REJECT:
        return
    raise AssertionError(f"damaged blob decoded to {value!r}")


@pytest.fixture(params=COMBOS, ids=combo_id)
def written(request: pytest.FixtureRequest) -> tuple[Codec, bytes]:
    comp, cipher = request.param
    codec = make_codec(comp, cipher)
    blob = codec.encode(VALUE, AAD)
    assert blob[2] == comp  # the compression really was applied
    assert blob[3] == cipher
    assert codec.decode(blob, AAD) == VALUE
    return codec, blob


def test_truncation_at_every_offset(written: tuple[Codec, bytes]) -> None:
    codec, blob = written
    for n in range(len(blob)):
        assert_rejected(codec, blob[:n])


def test_every_single_bit_flip(written: tuple[Codec, bytes]) -> None:
    codec, blob = written
    assert len(blob) < 200  # keeps this exhaustive loop fast
    for bit in range(len(blob) * 8):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        assert_rejected(codec, bytes(damaged))


def test_appended_bytes_are_rejected(written: tuple[Codec, bytes]) -> None:
    codec, blob = written
    for tail in (b"\0", b"\x90", blob[-4:], blob):
        assert_rejected(codec, blob + tail)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@FUZZ
@given(garbage=st.binary(max_size=300))
def test_random_garbage(combo: tuple[Compression, Cipher], garbage: bytes) -> None:
    assert_rejected(make_codec(*combo), garbage)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@FUZZ
@given(
    comp=st.integers(0, 255),
    cipher=st.integers(0, 255),
    kid=st.integers(0, 0xFFFF),
    body=st.binary(max_size=200),
)
def test_garbage_behind_a_valid_looking_header(
    combo: tuple[Compression, Cipher], comp: int, cipher: int, kid: int, body: bytes
) -> None:
    blob = struct.pack(">BBBBH", MAGIC, FORMAT, comp, cipher, kid) + body
    assert_rejected(make_codec(*combo), blob)


def test_every_wrong_header_byte(written: tuple[Codec, bytes]) -> None:
    """Each of the 6 header bytes set to each of its 255 other values."""
    codec, blob = written
    for offset in range(HEADER_SIZE):
        for byte in range(256):
            if byte != blob[offset]:
                damaged = bytearray(blob)
                damaged[offset] = byte
                assert_rejected(codec, bytes(damaged))


@pytest.mark.parametrize("combo", [c for c in COMBOS if c[1] is not Cipher.NONE], ids=combo_id)
def test_wrong_header_fields_of_encrypted_blobs(combo: tuple[Compression, Cipher]) -> None:
    comp, cipher = combo
    codec = make_codec(comp, cipher)
    blob = bytearray(codec.encode(VALUE, AAD))
    other_cipher = Cipher.XSALSA20_POLY1305 if cipher is Cipher.AES_256_GCM else Cipher.AES_256_GCM
    cases = {
        "magic": (0, 0xB4, errors.CorruptDataError),
        "format": (1, 2, errors.CorruptDataError),
        "format-0": (1, 0, errors.CorruptDataError),
        "other-cipher": (3, other_cipher, errors.DecryptError),
        # An encrypted store refuses plaintext blobs outright (issue 12).
        "plaintext-cipher": (3, Cipher.NONE, errors.DecryptError),
        "unknown-cipher": (3, 9, errors.CorruptDataError),
        # The compression id is authenticated: changing it fails decryption, not decompression.
        "other-compression": (2, (comp + 1) % 4, errors.DecryptError),
        "unknown-compression": (2, 200, errors.DecryptError),
    }
    for name, (offset, byte, error) in cases.items():
        damaged = bytearray(blob)
        damaged[offset] = byte
        with pytest.raises(error):
            codec.decode(bytes(damaged), AAD)
        assert name
    for kid, match in (
        (2, "authentication failed"),
        (3, "key id 3"),
        (0, "key id 0"),
        (0xFFFF, "key id 65535"),
    ):
        damaged = bytearray(blob)
        damaged[4:6] = kid.to_bytes(2, "big")
        with pytest.raises(errors.DecryptError, match=match):
            codec.decode(bytes(damaged), AAD)


# --- forged plaintext blobs: a valid CRC around bad content --------------------------------


def forge(payload: bytes, comp: int = 0, aad: bytes = AAD, cipher: int = 0, kid: int = 0) -> bytes:
    """A plaintext blob built the way ``codec/_envelope.py`` does, with a correct CRC."""
    header = struct.pack(">BBBBH", MAGIC, FORMAT, comp, cipher, kid)
    crc = zlib.crc32(payload, zlib.crc32(aad, zlib.crc32(header)))
    return header + payload + crc.to_bytes(4, "big")


def test_forge_matches_the_real_format() -> None:
    codec = make_codec(Compression.NONE, Cipher.NONE)
    assert forge(b"\xa3abc") == codec.encode("abc", AAD)
    assert codec.decode(forge(b"\xc4\x01x"), AAD) == b"x"
    snappy = bytes(cramjam.snappy.compress_raw(b"\xc4\x01x"))
    assert codec.decode(forge(snappy, Compression.SNAPPY), AAD) == b"x"


INVALID_MSGPACK = [
    b"",  # nothing at all
    b"\xc1",  # the one byte msgpack never uses
    b"\x92\x01",  # array of 2 with one element
    b"\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
    b"\xc4\x05ab",  # bin8 claiming more than there is
    b"\x01\x02",  # trailing data after a complete value
    b"\x81\x91\x80\x01",  # a map keyed by an array holding a map (unhashable)
    b"\x81\x80\x01",  # a map keyed by a map
    b"\xa2\xff\xfe",  # str that is not UTF-8
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 billion items
]


@pytest.mark.parametrize("payload", INVALID_MSGPACK)
@pytest.mark.parametrize("comp", list(Compression))
def test_valid_crc_but_invalid_msgpack(comp: Compression, payload: bytes) -> None:
    data = _compress.compress(comp, payload)
    with pytest.raises(errors.CorruptDataError, match="msgpack"):
        make_codec(comp, Cipher.NONE).decode(forge(data, comp), AAD)


CORRUPT_COMPRESSED = [
    b"",
    b"\x00",
    b"\xff\xff\xff\xff\x0f\x00",  # snappy: claims 4 GiB
    b"garbage that is not compressed",
    b"\x28\xb5\x2f\xfd\x00\x00",  # a truncated zstd frame header
    b"\x1f\x8b\x08\x00\x00\x00",  # a truncated gzip header
]


@pytest.mark.parametrize("data", CORRUPT_COMPRESSED)
@pytest.mark.parametrize("comp", [Compression.SNAPPY, Compression.ZSTD, Compression.GZIP])
def test_valid_crc_but_corrupt_compressed_data(comp: Compression, data: bytes) -> None:
    with pytest.raises(errors.CorruptDataError):
        make_codec(comp, Cipher.NONE).decode(forge(data, comp), AAD)


@pytest.mark.parametrize("comp", [Compression.SNAPPY, Compression.ZSTD, Compression.GZIP])
def test_valid_crc_but_truncated_compressed_data(comp: Compression) -> None:
    codec = make_codec(comp, Cipher.NONE)
    blob = codec.encode(VALUE, AAD)
    assert blob[2] == comp
    packed = blob[HEADER_SIZE:-4]
    for n in range(len(packed)):
        assert_rejected(codec, forge(packed[:n], comp))


@pytest.mark.parametrize("comp", [4, 5, 0x80, 0xFF])
def test_valid_crc_but_unknown_compression_id(comp: int) -> None:
    with pytest.raises(errors.CorruptDataError, match=f"compression id {comp}"):
        make_codec(Compression.NONE, Cipher.NONE).decode(forge(b"\xc0", comp), AAD)


@FUZZ
@given(payload=st.binary(max_size=200), comp=st.sampled_from(list(Compression)))
def test_valid_crc_around_random_payloads(payload: bytes, comp: Compression) -> None:
    """Whatever the payload, the outcome is a value or CorruptDataError, nothing else."""
    codec = make_codec(Compression.NONE, Cipher.NONE)
    try:
        value = codec.decode(forge(payload, comp), AAD)
    except errors.CorruptDataError:
        return
    # Accepted: then it is exactly what the payload says, nothing made up.
    raw = _compress.decompress(comp, payload, 16 * 1024 * 1024)
    assert repr(value) == repr(msgpack.unpackb(raw, raw=False, strict_map_key=False))  # NaN-safe


def test_forged_plaintext_blob_with_a_key_id_is_rejected() -> None:
    """encode() writes key id 0 on plaintext blobs; anything else is not its output."""
    migrating = Codec(cipher=Cipher.AES_256_GCM, keyring=KeyRing({1: KEY_1}), allow_plaintext=True)
    assert migrating.decode(forge(b"\xc0"), AAD) is None
    for kid in (1, 2, 0xFFFF):
        with pytest.raises(errors.CorruptDataError, match=f"key id {kid}"):
            migrating.decode(forge(b"\xc0", kid=kid), AAD)
    # Without the migration switch an encrypted codec refuses every plaintext blob.
    codec = make_codec(Compression.NONE, Cipher.AES_256_GCM)
    for kid in (0, 1, 2, 0xFFFF):
        with pytest.raises(errors.DecryptError, match="plaintext record"):
            codec.decode(forge(b"\xc0", kid=kid), AAD)


# --- whatever encode() accepts, decode() returns ---------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_hashable = st.recursive(_scalars, lambda inner: st.tuples(inner, inner), max_leaves=6)


def _listify(value: Any) -> Any:
    """What a value reads back as: tuples become lists, except where they key a dict."""
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value


@FUZZ
@given(
    value=st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner),
            st.dictionaries(_hashable, inner, max_size=4),
        ),
        max_leaves=20,
    )
)
def test_every_accepted_value_reads_back(value: Any) -> None:
    """Tuple dict keys are written as arrays; they must read back, not fail as unhashable."""
    codec = make_codec(Compression.ZSTD, Cipher.AES_256_GCM)
    out = codec.decode(codec.encode(value, AAD), AAD)
    assert repr(out) == repr(_listify(value))


def test_tuple_keys_read_back_as_tuples() -> None:
    codec = make_codec(Compression.NONE, Cipher.NONE)
    value = {(1, 2): b"x", ((b"a", None), "s"): [(1,)], "k": {(): True}}
    assert codec.decode(codec.encode(value, AAD), AAD) == {
        (1, 2): b"x",
        ((b"a", None), "s"): [[1]],
        "k": {(): True},
    }


# --- authentic encrypted blobs (right key, right address) around bad content ---------------

# Never a hang: a decompressor or msgpack stuck on hostile input fails this file fast.
pytestmark = pytest.mark.timeout(120)


def sealed(payload: bytes, comp: int, cipher: Cipher) -> bytes:
    """An encrypted blob that authenticates (key 1, this address) around any payload."""
    header = struct.pack(">BBBBH", MAGIC, FORMAT, comp, cipher, 1)
    return header + CipherSuite().seal(cipher, KEY_1, payload, header + AAD)


ENCRYPTING = [Cipher.AES_256_GCM, Cipher.XSALSA20_POLY1305]


@pytest.mark.parametrize("cipher", ENCRYPTING)
def test_sealed_builder_matches_the_real_format(cipher: Cipher) -> None:
    codec = make_codec(Compression.NONE, cipher)
    assert codec.decode(sealed(b"\xc4\x01x", Compression.NONE, cipher), AAD) == b"x"
    zstd = bytes(cramjam.zstd.compress(b"\xc4\x01x"))
    assert codec.decode(sealed(zstd, Compression.ZSTD, cipher), AAD) == b"x"


@pytest.mark.parametrize("cipher", ENCRYPTING)
@pytest.mark.parametrize("payload", INVALID_MSGPACK)
@pytest.mark.parametrize("comp", list(Compression))
def test_authentic_encrypted_blob_with_invalid_msgpack(
    cipher: Cipher, comp: Compression, payload: bytes
) -> None:
    data = _compress.compress(comp, payload)
    with pytest.raises(errors.CorruptDataError, match="msgpack"):
        make_codec(comp, cipher).decode(sealed(data, comp, cipher), AAD)


@pytest.mark.parametrize("cipher", ENCRYPTING)
@pytest.mark.parametrize("data", CORRUPT_COMPRESSED)
@pytest.mark.parametrize("comp", [Compression.SNAPPY, Compression.ZSTD, Compression.GZIP])
def test_authentic_encrypted_blob_with_corrupt_compressed_data(
    cipher: Cipher, comp: Compression, data: bytes
) -> None:
    with pytest.raises(errors.CorruptDataError):
        make_codec(comp, cipher).decode(sealed(data, comp, cipher), AAD)


@pytest.mark.parametrize("cipher", ENCRYPTING)
def test_authentic_encrypted_blob_with_unknown_compression_id(cipher: Cipher) -> None:
    for comp in (4, 0x80, 0xFF):
        with pytest.raises(errors.CorruptDataError, match=f"compression id {comp}"):
            make_codec(Compression.NONE, cipher).decode(sealed(b"\xc0", comp, cipher), AAD)


@FUZZ
@given(
    payload=st.binary(max_size=200),
    comp=st.sampled_from(list(Compression)),
    cipher=st.sampled_from(ENCRYPTING),
)
def test_authentic_encrypted_random_payloads(
    payload: bytes, comp: Compression, cipher: Cipher
) -> None:
    """Behind a valid tag, as behind a valid CRC: a value msgpack agrees on, or CorruptDataError."""
    try:
        value = make_codec(comp, cipher).decode(sealed(payload, comp, cipher), AAD)
    except errors.CorruptDataError:
        return
    raw = _compress.decompress(comp, payload, 16 * 1024 * 1024)
    try:
        expected = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except TypeError:  # an array keying a map: read back with tuple keys (tested above)
        return
    assert repr(value) == repr(expected)  # NaN-safe
