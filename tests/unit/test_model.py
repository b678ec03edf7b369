"""Validation of everything a caller names: namespaces, session ids, key types, key ids, set()."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baileys_store._model import (
    MAX_ID_BYTES,
    SessionAddr,
    check_id,
    check_ids,
    check_namespace,
    check_type,
    normalize_set,
    session_addr,
)
from baileys_store.errors import InvalidInputError, StoreError


def _session(value: object) -> str:
    return session_addr("ns", value).session_id


# Invalid for all three names: namespace, session id, key type.
BAD_NAMES: list[object] = [
    "",
    "-lead",
    ".lead",
    "_lead",
    "/lead",
    "a{b}",
    "{tag}",
    "a}",
    "a b",
    "a\n",
    "a\x00",
    "tab\t",
    "a\x7f",
    "é",
    "a\u200b",
    "\ud800",
    "a\udfff",
    "Ω",
    None,
    1,
    b"abc",
    ["a"],
    True,
]


@pytest.mark.parametrize(
    "check", [check_namespace, _session, check_type], ids=["namespace", "session", "type"]
)
@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_rejected(check: Callable[[object], str], bad: object) -> None:
    with pytest.raises(InvalidInputError):
        check(bad)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("clinic-42/channel-1", True),
        ("a", True),
        ("tenant:1@x+y=z.v_w", True),
        ("A" * 128, True),
        ("A" * 129, False),
        ("abc\n", False),  # fullmatch: a trailing newline is not ignored
    ],
)
def test_namespace(value: str, ok: bool) -> None:
    if ok:
        assert check_namespace(value) == value
    else:
        with pytest.raises(InvalidInputError, match="namespace"):
            check_namespace(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("5511999999999", True),
        ("5511999999999@s.whatsapp.net", True),
        ("123:4@lid", True),
        ("s" * 128, True),
        ("s" * 129, False),
        ("a/b", False),  # only namespaces are paths
    ],
)
def test_session_id(value: str, ok: bool) -> None:
    if ok:
        addr = session_addr("clinic-1", value)
        assert addr == SessionAddr("clinic-1", value)
        assert str(addr) == f"clinic-1/{value}"
    else:
        with pytest.raises(InvalidInputError, match="session id"):
            session_addr("clinic-1", value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("session", True),
        ("pre-key", True),
        ("app-state-sync-version", True),
        ("contacts-tc-token", True),
        ("new.type_2026", True),
        ("t" * 64, True),
        ("t" * 65, False),
        ("a:b", False),
        ("a/b", False),
        ("a@b", False),
    ],
)
def test_key_type(value: str, ok: bool) -> None:
    if ok:
        assert check_type(value) == value
    else:
        with pytest.raises(InvalidInputError, match="key type"):
            check_type(value)


class _Kind(enum.IntEnum):
    FIVE = 5


class _LoudInt(int):
    def __str__(self) -> str:
        return "not-a-number"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1234.0", "1234.0"),
        ("5511_1.0", "5511_1.0"),
        ("123@g.us::5511@s.whatsapp.net::0", "123@g.us::5511@s.whatsapp.net::0"),
        ("AbC/+de=", "AbC/+de="),
        ("{braces} and spaces", "{braces} and spaces"),
        (" ", " "),
        ("é" * 512, "é" * 512),  # 1024 UTF-8 bytes
        ("x" * MAX_ID_BYTES, "x" * MAX_ID_BYTES),
        (0, "0"),
        (812, "812"),
        (-1, "-1"),
        (2**70, str(2**70)),
        (_Kind.FIVE, "5"),
        (_LoudInt(7), "7"),
    ],
)
def test_valid_ids(value: object, expected: str) -> None:
    got = check_id(value)
    assert got == expected
    assert type(got) is str


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_ID_BYTES + 1),
        "é" * 513,
        "a\x00",
        "a\n",
        "\t",
        "\x1f",
        "a\x7f",
        "\ud800",
        "a\udc80b",
        True,
        False,
        None,
        1.0,
        b"1",
        ["1"],
        ("1",),
        {"1": 1},
    ],
    ids=repr,
)
def test_invalid_ids(value: object) -> None:
    with pytest.raises(InvalidInputError, match="key id"):
        check_id(value)


def test_get_ids_drop_duplicates_keeping_order() -> None:
    assert check_ids(["3", 1, "1", 2, "3", "2", 1]) == ["3", "1", "2"]
    assert check_ids(iter(["b", "a", "b"])) == ["b", "a"]
    assert check_ids(range(3)) == ["0", "1", "2"]
    assert check_ids([]) == []


@pytest.mark.parametrize("ids", ["1234.0", b"12", bytearray(b"12"), memoryview(b"12"), None, 5])
def test_ids_must_be_a_collection_of_ids(ids: Any) -> None:
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        check_ids(ids)


def test_one_bad_id_fails_the_whole_call() -> None:
    with pytest.raises(InvalidInputError):
        check_ids(["1", "2", True])


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(["-5", "0", "3", "a"]))))
def test_check_ids_property(ids: list[int | str]) -> None:
    out = check_ids(ids)
    as_str = [str(i) for i in ids]
    assert out == sorted(set(as_str), key=as_str.index)


# --- set() ---------------------------------------------------------------------------------


def test_normalize_set() -> None:
    value = {"public": b"p" * 32, "private": b"q" * 32}
    data = {"pre-key": {1: value, "2": None}, "session": {"1.0": b"s"}}
    out = normalize_set(data)
    assert out == {"pre-key": {"1": value, "2": None}, "session": {"1.0": b"s"}}
    assert out["pre-key"]["1"] is value  # values are passed on, not copied
    assert normalize_set({}) == {}
    assert normalize_set({"session": {}}) == {"session": {}}
    # int and str spellings of one id collapse; the last one wins.
    assert normalize_set({"pre-key": {1: b"a", "1": b"b"}}) == {"pre-key": {"1": b"b"}}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, "mapping"),
        ([("session", {})], "mapping"),
        ("session", "mapping"),
        ({"session": None}, "session"),
        ({"session": [b"x"]}, "session"),
        ({"session": "1.0"}, "session"),
        ({"bad type": {"1": b"x"}}, "key type"),
        ({1: {"1": b"x"}}, "key type"),
        ({"session": {True: b"x"}}, "key id"),
        ({"session": {"": b"x"}}, "key id"),
        ({"session": {"a\x00": b"x"}}, "key id"),
        ({"session": {None: b"x"}}, "key id"),
    ],
)
def test_normalize_set_errors(data: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as exc_info:
        normalize_set(data)
    assert isinstance(exc_info.value, StoreError)
    assert isinstance(exc_info.value, ValueError)


def test_error_messages_do_not_echo_ids() -> None:
    secretish = "x" * 2000
    with pytest.raises(InvalidInputError) as exc_info:
        check_id(secretish)
    assert secretish[:100] not in str(exc_info.value)
