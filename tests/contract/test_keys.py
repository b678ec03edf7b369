"""Key-store contract: every backend keeps every value shape Baileys and its ports write.

Each test runs once per backend of ``tests.backends.CONTRACT_BACKENDS`` and uses only
``backend.namespace``, so it is safe on servers shared with other tests.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from baileys_store import AuthStore, errors
from tests.conftest import Backend


def _rand(n: int) -> bytes:
    return os.urandom(n)


def _index_value_map(target_bytes: int) -> dict[str, bytes]:
    """An app-state ``indexValueMap`` of roughly ``target_bytes`` (base64 index -> valueMac)."""
    out: dict[str, bytes] = {}
    while sum(len(k) + len(v) for k, v in out.items()) < target_bytes:
        out[base64.b64encode(_rand(32)).decode()] = _rand(32)
    return out


# name -> (type, id, value): the shapes of BAILEYS-DATA.md (pyaileys values, Node/waeys values).
SHAPES: dict[str, tuple[str, str, Any]] = {
    "session-bytes": ("session", "5511999887766.0", _rand(640)),
    "session-lid": ("session", "123456789012345_1.3", _rand(512)),
    "session-node-json": (
        "session",
        "5511999887766.2",
        {
            "_sessions": {
                base64.b64encode(_rand(33)).decode(): {
                    "registrationId": 4242,
                    "currentRatchet": {"rootKey": base64.b64encode(_rand(32)).decode()},
                    "chains": {},
                    "indexInfo": {"closed": -1, "used": 1712345678901},
                }
            },
            "version": "v1",
        },
    ),
    "pre-key": ("pre-key", "1", {"public": _rand(32), "private": _rand(32)}),
    "sender-key": ("sender-key", "120363041234567890@g.us::5511999887766::0", _rand(300)),
    "sender-key-memory": (
        "sender-key-memory",
        "120363041234567890@g.us",
        {"5511999887766:2@s.whatsapp.net": True, "123456789012345:0@lid": False},
    ),
    "app-state-sync-key": ("app-state-sync-key", "AAAAAB/+cw==", _rand(80)),
    "app-state-sync-version": (
        "app-state-sync-version",
        "critical_unblock_low",
        {"version": 42, "hash": _rand(128), "indexValueMap": _index_value_map(100_000)},
    ),
    "identity-key": ("identity-key", "5511999887766.0", b"\x05" + _rand(32)),
    "lid-mapping": ("lid-mapping", "5511999887766", "123456789012345"),
    "lid-mapping-reverse": ("lid-mapping", "123456789012345_reverse", "5511999887766"),
    "device-list": ("device-list", "5511999887766", ["0", "12", "27"]),
    "tctoken": (
        "tctoken",
        "5511999887766@s.whatsapp.net",
        {"token": _rand(24), "timestamp": "1712345678"},
    ),
    "tctoken-index": ("tctoken", "__index", ["5511999887766@s.whatsapp.net"]),
    "contacts-tc-token": ("contacts-tc-token", "5511@s.whatsapp.net", {"token": _rand(16)}),
    "new-type": ("brand-new-type.v2", "x:y@z.w/+=", {"n": 1, "f": 1.5, "none": None, "t": True}),
}


def assert_same(got: Any, want: Any, path: str = "value") -> None:
    """Equal *and* of the same types all the way down (bytes stay bytes, never str/bytearray)."""
    want_type = bytes if isinstance(want, (bytes, bytearray, memoryview)) else type(want)
    want_type = list if want_type is tuple else want_type
    assert type(got) is want_type, f"{path}: {type(got).__name__} != {want_type.__name__}"
    if isinstance(want, dict):
        assert set(got) == set(want), f"{path}: keys differ"
        for k in want:
            assert_same(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length differs"
        for n, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{n}]")
    else:
        assert got == (bytes(want) if want_type is bytes else want), f"{path}: differs"


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_round_trip_each_shape(backend: Backend, shape: str) -> None:
    key_type, key_id, value = SHAPES[shape]
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({key_type: {key_id: value}})
        assert_same((await keys.get(key_type, [key_id]))[key_id], value)
    for _ in range(2):  # survives re-opening, twice
        async with backend.open() as store:
            keys = store.session("s1", namespace=backend.namespace).keys
            got = await keys.get(key_type, [key_id])
            assert list(got) == [key_id]
            assert_same(got[key_id], value)


async def test_all_shapes_in_one_set_survive_reopen(backend: Backend) -> None:
    data: dict[str, dict[str, Any]] = {}
    for key_type, key_id, value in SHAPES.values():
        data.setdefault(key_type, {})[key_id] = value
    async with backend.open() as store:
        await store.session("s1", namespace=backend.namespace).keys.set(data)
    for _ in range(2):
        async with backend.open() as store:
            keys = store.session("s1", namespace=backend.namespace).keys
            for key_type, items in data.items():
                got = await keys.get(key_type, list(items))
                assert_same(got, items, key_type)


async def test_bytes_like_values_come_back_as_bytes(store: AuthStore, backend: Backend) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    raw = _rand(40)
    await keys.set({"session": {"a.0": bytearray(raw), "b.0": memoryview(raw)}})
    got = await keys.get("session", ["a.0", "b.0"])
    assert got == {"a.0": raw, "b.0": raw}
    assert all(type(v) is bytes for v in got.values())


async def test_overwrite_keeps_latest(backend: Backend) -> None:
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        for n in range(5):
            await keys.set({"session": {"a.0": f"v{n}".encode()}})
        assert await keys.get("session", ["a.0"]) == {"a.0": b"v4"}
    async with backend.open() as store:
        got = await store.session("s1", namespace=backend.namespace).keys.get("session", ["a.0"])
        assert got == {"a.0": b"v4"}


async def test_none_deletes(backend: Backend) -> None:
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({"session": {"a.0": b"A", "b.0": b"B"}, "pre-key": {"7": {"public": b"p"}}})
        await keys.set({"session": {"a.0": None}, "pre-key": {"7": None}})
        assert await keys.get("session", ["a.0", "b.0"]) == {"b.0": b"B"}
        assert await keys.get("pre-key", ["7"]) == {}
        await keys.set({"session": {"never-existed.0": None}})  # deleting nothing is fine
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        assert await keys.get("session", ["a.0", "b.0"]) == {"b.0": b"B"}
        assert await keys.get("pre-key", ["7"]) == {}


async def test_missing_ids_are_absent_not_none(store: AuthStore, backend: Backend) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    assert await keys.get("session", ["nope.0"]) == {}
    await keys.set({"session": {"a.0": b"A"}})
    got = await keys.get("session", ["nope.0", "a.0", "other.1"])
    assert got == {"a.0": b"A"}
    assert "nope.0" not in got
    assert await keys.get("session", []) == {}
    assert await keys.get("identity-key", ["a.0"]) == {}  # same id, other type
    assert await keys.get("session", ["a.0", "a.0"]) == {"a.0": b"A"}  # duplicates collapse


async def test_same_id_in_different_types_is_independent(
    store: AuthStore, backend: Backend
) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    await keys.set({"session": {"x": b"S"}, "identity-key": {"x": b"I"}, "sender-key": {"x": b"K"}})
    await keys.set({"identity-key": {"x": None}})
    assert await keys.get("session", ["x"]) == {"x": b"S"}
    assert await keys.get("identity-key", ["x"]) == {}
    assert await keys.get("sender-key", ["x"]) == {"x": b"K"}


@pytest.mark.parametrize(
    ("bad_type", "bad_id", "bad_value"),
    [
        ("pre-key", "2", object()),  # unserializable value
        ("pre-key", "", b"v"),  # empty id
        ("pre-key", "a\x00b", b"v"),  # control character
        ("pre-key", 1.5, b"v"),  # float id
        ("bad type!", "2", b"v"),  # bad type name
    ],
)
async def test_multi_type_set_with_one_invalid_entry_writes_nothing(
    backend: Backend, bad_type: str, bad_id: Any, bad_value: Any
) -> None:
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({"session": {"a.0": b"old"}})
        with pytest.raises(errors.InvalidInputError):
            await keys.set(
                {
                    "session": {"a.0": b"new", "b.0": b"new"},
                    "identity-key": {"a.0": b"\x05" + _rand(32)},
                    bad_type: {bad_id: bad_value},
                }
            )
        assert await keys.get("session", ["a.0", "b.0"]) == {"a.0": b"old"}
    async with backend.open() as store:  # nothing reached the durable tier either
        keys = store.session("s1", namespace=backend.namespace).keys
        assert await keys.get("session", ["a.0", "b.0"]) == {"a.0": b"old"}
        assert await keys.get("identity-key", ["a.0"]) == {}
        assert await keys.get("pre-key", ["2"]) == {}


async def test_multi_type_set_applies_every_type(backend: Backend) -> None:
    identity = b"\x05" + _rand(32)
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({"session": {"a.0": b"old"}})
        await keys.set({"session": {"a.0": None}, "identity-key": {"a.0": identity}})
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        assert await keys.get("session", ["a.0"]) == {}
        assert await keys.get("identity-key", ["a.0"]) == {"a.0": identity}


async def test_pre_key_batch_of_812(backend: Backend) -> None:
    batch = {n: {"public": _rand(32), "private": _rand(32)} for n in range(1, 813)}
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({"pre-key": batch})  # int ids, as waeys passes them
        got = await keys.get("pre-key", [str(n) for n in range(1, 813)])
        assert len(got) == 812
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        by_int = await keys.get("pre-key", list(range(1, 813)))
        by_str = await keys.get("pre-key", [str(n) for n in range(1, 820)])
    assert by_int == by_str
    assert set(by_str) == {str(n) for n in range(1, 813)}
    for n, pair in batch.items():
        assert_same(by_str[str(n)], pair)


async def test_big_mixed_set_of_upserts_and_deletes_over_types(backend: Backend) -> None:
    # Runs longer than any backend's statement or chunk size, deletes between upserts.
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        await keys.set({"pre-key": {n: _rand(8) for n in range(700)}})
        mixed: dict[int, bytes | None] = {
            n: (None if n % 3 == 0 else bytes([n % 251]) * 5) for n in range(700)
        }
        mixed.update({n: b"new" for n in range(700, 950)})
        sessions = {f"{n}.0": _rand(4) for n in range(450)}
        await keys.set({"pre-key": mixed, "session": sessions})
    async with backend.open() as store:
        keys = store.session("s1", namespace=backend.namespace).keys
        got = await keys.get("pre-key", list(range(950)))
        assert got == {str(n): v for n, v in mixed.items() if v is not None}
        assert await keys.get("session", list(sessions)) == sessions


async def test_int_ids_are_decimal_strings(store: AuthStore, backend: Backend) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    await keys.set({"pre-key": {5: b"five", "6": b"six"}})
    assert await keys.get("pre-key", ["5", 6]) == {"5": b"five", "6": b"six"}
    assert await keys.get("pre-key", [5]) == {"5": b"five"}
    await keys.set({"pre-key": {"5": None, 6: None}})
    assert await keys.get("pre-key", [5, "6"]) == {}


BAD_IDS: list[Any] = ["", "x" * 1025, "a\nb", "a\x7fb", "\ud800", True, 1.5, None, b"bytes", ("t",)]
BAD_TYPES: list[Any] = ["", "has space", "é", "a" * 65, "-lead", "{tag}", 7, None, b"session"]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
async def test_bad_ids_are_rejected(store: AuthStore, backend: Backend, bad_id: Any) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    with pytest.raises(errors.InvalidInputError):
        await keys.set({"session": {bad_id: b"v"}})
    with pytest.raises(errors.InvalidInputError):
        await keys.get("session", [bad_id])


@pytest.mark.parametrize("bad_type", BAD_TYPES, ids=repr)
async def test_bad_types_are_rejected(store: AuthStore, backend: Backend, bad_type: Any) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    with pytest.raises(errors.InvalidInputError):
        await keys.set({bad_type: {"a": b"v"}})
    with pytest.raises(errors.InvalidInputError):
        await keys.get(bad_type, ["a"])


async def test_bad_call_shapes_are_rejected(store: AuthStore, backend: Backend) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    for bad in ([("session", {"a": b"v"})], {"session": [("a", b"v")]}, {"session": b"v"}):
        with pytest.raises(errors.InvalidInputError):
            await keys.set(bad)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInputError):
        await keys.get("session", "a.0")  # a single string is not a list of ids


async def test_long_and_unicode_ids(store: AuthStore, backend: Backend) -> None:
    keys = store.session("s1", namespace=backend.namespace).keys
    long_id = "g" * 1024
    data = {long_id: b"long", "ção@lid:3.0": b"uni", "a/b+c=": b"b64"}
    await keys.set({"session": data})
    assert await keys.get("session", list(data)) == data
