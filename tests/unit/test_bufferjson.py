"""BufferJSON (both flavours), key file names and flavour detection of Baileys auth folders."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyaileys.util import json as pyaileys_json

from baileys_store.errors import InvalidInputError
from baileys_store.integrations._bufferjson import FLAVOURS, Flavour, b64decode, dumps, loads
from baileys_store.integrations._folder_names import KeyNameParser, key_filename
from baileys_store.integrations.baileys_folder import detect_flavour

# -- reviving Buffers ---------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_base64_and_number_array_buffers_revive_as_bytes(flavour: Flavour) -> None:
    text = json.dumps(
        {
            "b64": {"type": "Buffer", "data": base64.b64encode(b"\x00\xffhi").decode()},
            "arr": {"type": "Buffer", "data": [0, 255, 104, 105]},
            "empty": {"type": "Buffer", "data": ""},
            "nested": [{"k": {"type": "Buffer", "data": [1, 2]}}],
        }
    )
    assert loads(text, flavour) == {
        "b64": b"\x00\xffhi",
        "arr": b"\x00\xffhi",
        "empty": b"",
        "nested": [{"k": b"\x01\x02"}],
    }


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("data", [[256], [-1], [1.5], [True], ["1"]])
def test_number_array_buffer_out_of_byte_range_is_an_error(flavour: Flavour, data: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"0\.\.255"):
        loads(json.dumps({"type": "Buffer", "data": data}), flavour)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_buffer_lookalikes_stay_objects(flavour: Flavour) -> None:
    for obj in (
        {"type": "Buffer", "data": [1], "extra": 1},  # not the form any writer produces
        {"type": "Buffer"},
        {"type": "buffer", "data": "AA=="},
        {"type": "Buffer", "data": {"0": 1}},
    ):
        got = loads(json.dumps(obj), flavour)
        assert isinstance(got, dict)
        assert got.keys() == obj.keys()


def test_node_revives_integer_keyed_objects_in_numeric_order() -> None:
    # A Uint8Array serialized without the replacer; Baileys' reviver turns it into a Buffer.
    obj = {str(i): i * 20 for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 11)}
    assert loads(json.dumps(obj), "node") == bytes(i * 20 for i in range(12))
    assert loads('{"0": 4, "1": 5}', "pyaileys") == {"0": 4, "1": 5}  # pyaileys never does


@pytest.mark.parametrize(
    "obj",
    [{}, {"01": 1}, {"0": 256}, {"0": True}, {"0": 1, "a": 2}, {"0": "1"}, {"-1": 1}],
)
def test_node_leaves_other_objects_alone(obj: dict[str, Any]) -> None:
    assert loads(json.dumps(obj), "node") == obj


def test_base64_is_decoded_as_leniently_as_node() -> None:
    assert b64decode("AQID") == b"\x01\x02\x03"
    assert b64decode("-_8") == b"\xfb\xff"  # URL-safe alphabet, no padding
    assert b64decode("AQ ID\n") == b"\x01\x02\x03"  # whitespace ignored
    assert b64decode("AQ==garbage") == b"\x01"  # stops at the padding
    assert b64decode("AQIDB") == b"\x01\x02\x03"  # a lone trailing sextet is dropped


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("text", ["{", '{"a": NaN}', "[Infinity]", b'"\xff"', ""])
def test_bad_json_is_an_invalid_input_error(flavour: Flavour, text: str | bytes) -> None:
    with pytest.raises(InvalidInputError):
        loads(text, flavour)


def test_decode_errors_do_not_quote_file_content() -> None:
    with pytest.raises(InvalidInputError, match=r"not UTF-8 \(at byte 2\)") as err:
        loads(b'"a\xfe\xff"', "node")
    assert "xfe" not in str(err.value)


def test_pyaileys_loads_matches_pyaileys_reader() -> None:
    value = {"b": b"\x01\x02", "m": {"x": [b"", "s", 1, None, True]}}
    text = pyaileys_json.dumps(value)
    assert loads(text, "pyaileys") == pyaileys_json.loads(text) == value


# -- writing ------------------------------------------------------------------------------


def test_node_dumps_matches_json_stringify_with_bufferjson_replacer() -> None:
    # What Node prints for JSON.stringify(value, BufferJSON.replacer): compact, insertion order,
    # non-ASCII (even U+2028) unescaped.
    value = {"z": b"\x01\x02", "a": 'é "q" \\ \u2028', "n": [1, None]}
    assert dumps(value, "node") == (
        '{"z":{"type":"Buffer","data":"AQI="},"a":"é \\"q\\" \\\\ \u2028","n":[1,null]}'
    )


def test_pyaileys_dumps_matches_pyaileys_writer() -> None:
    value = {"z": b"\x01\x02", "a": "é", "n": {"y": [1, b"\xff"], "b": False}}
    assert dumps(value, "pyaileys") == pyaileys_json.dumps(value)
    assert dumps(value, "pyaileys", creds=True) == pyaileys_json.dumps(value, indent=2)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("value", [float("nan"), {1, 2}, {"a": float("inf")}])
def test_unwritable_values_are_invalid_input(flavour: Flavour, value: Any) -> None:
    with pytest.raises(InvalidInputError):
        dumps(value, flavour)


_KEYS = st.text(min_size=1, max_size=8).map(lambda s: "k" + s)  # never integer-like / "type"
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("flavour", FLAVOURS)
@given(value=_VALUES)
def test_dumps_then_loads_gives_the_value_back(flavour: Flavour, value: Any) -> None:
    assert loads(dumps(value, flavour), flavour) == value
    assert loads(dumps(value, flavour).encode(), flavour) == value


# -- file names -----------------------------------------------------------------------------

_NAMES = [
    ("pre-key", "812", "pre-key-812.json"),
    ("session", "2222222222.0", "session-2222222222.0.json"),
    ("session", "3333333333_1.12", "session-3333333333_1.12.json"),
    ("identity-key", "3333333333_1.0", "identity-key-3333333333_1.0.json"),
    (
        "sender-key",
        "120363025246125888@g.us::1111111111::5",
        "sender-key-120363025246125888@g.us--1111111111--5.json",
    ),
    (
        "sender-key",
        "5511999999999-1600000000@g.us::4444444444_1::0",
        "sender-key-5511999999999-1600000000@g.us--4444444444_1--0.json",
    ),
    (
        "sender-key-memory",
        "5511999999999-1600000000@g.us",
        "sender-key-memory-5511999999999-1600000000@g.us.json",
    ),
    ("app-state-sync-key", "+/+/PgE=", "app-state-sync-key-+__+__PgE=.json"),
    (
        "app-state-sync-version",
        "critical_unblock_low",
        "app-state-sync-version-critical_unblock_low.json",
    ),
    ("tctoken", "__index", "tctoken-__index.json"),
    ("tctoken", "3333333333@lid", "tctoken-3333333333@lid.json"),
    ("lid-mapping", "3333333333_reverse", "lid-mapping-3333333333_reverse.json"),
    ("device-list", "2222222222", "device-list-2222222222.json"),
    (
        "contacts-tc-token",
        "2222222222@s.whatsapp.net",
        "contacts-tc-token-2222222222@s.whatsapp.net.json",
    ),
]


@pytest.mark.parametrize(("key_type", "key_id", "name"), _NAMES)
def test_file_names_round_trip(key_type: str, key_id: str, name: str) -> None:
    assert key_filename(key_type, key_id) == name
    assert KeyNameParser().parse(name) == (key_type, key_id)


@pytest.mark.parametrize(
    "name",
    [
        "creds.json",
        "pre-key-1.txt",
        "future-type-abc.json",
        "pre-key-abc.json",  # pre-key ids are numbers
        "session-meta-12.json",  # a newer type 'session-meta', not a session id
        "sender-key-broken.json",
        "app-state-sync-key-not base64!.json",
        "pre-key-.json",
    ],
)
def test_names_no_known_type_explains_are_not_guessed(name: str) -> None:
    assert KeyNameParser().parse(name) is None


def test_extra_types_are_accepted_verbatim_and_win_as_longer_prefixes() -> None:
    parser = KeyNameParser(["session-meta", "future-type"])
    assert parser.parse("session-meta-12.json") == ("session-meta", "12")
    assert parser.parse("future-type-a-b__c.json") == ("future-type", "a-b__c")
    assert parser.parse("session-1.0.json") == ("session", "1.0")


def test_detect_flavour() -> None:
    assert detect_flavour({"noiseKey": {}, "registrationId": 1}) == "node"
    assert detect_flavour({"noise_key": {}, "registration_id": 1}) == "pyaileys"
    with pytest.raises(InvalidInputError, match="no known creds fields"):
        detect_flavour({"foo": 1})
    with pytest.raises(InvalidInputError, match="mixes"):
        detect_flavour({"noiseKey": {}, "noise_key": {}})
