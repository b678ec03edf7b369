"""Creds contract: versioned compare-and-set, validation of known fields, the pyaileys shapes."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

import pytest
from pyaileys.auth.serde import creds_from_dict
from pyaileys.auth.utils import init_auth_creds

from baileys_store import AuthStore, errors, use_auth_state
from tests.conftest import Backend
from tests.contract.test_keys import assert_same
from tests.creds_data import key_pair
from tests.creds_data import node_creds as shared_node_creds


def _pair() -> dict[str, bytes]:
    return key_pair()


def node_creds() -> dict[str, Any]:
    """Baileys-shaped creds plus an unknown field (unknown fields pass through)."""
    return shared_node_creds(futureField={"nested": [1, "two", b"\x03"]})


async def test_save_returns_increasing_versions(backend: Backend) -> None:
    first, second = node_creds(), node_creds()
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.load_creds() is None
        assert await sess.creds_version() == 0
        assert await sess.save_creds(first) == 1
        assert await sess.save_creds(second) == 2
        assert await sess.creds_version() == 2
        assert_same(await sess.load_creds(), second)
    for _ in range(2):
        async with backend.open() as store:
            sess = store.session("s1", namespace=backend.namespace)
            assert await sess.creds_version() == 2
            assert_same(await sess.load_creds(), second)


async def test_stale_expected_version_conflicts(backend: Backend) -> None:
    kept = node_creds()
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.save_creds(node_creds(), expected_version=0) == 1
        assert await sess.save_creds(kept, expected_version=1) == 2
        for stale in (0, 1, 3, 99):
            with pytest.raises(errors.ConflictError) as info:
                await sess.save_creds(node_creds(), expected_version=stale)
            assert (info.value.expected, info.value.actual) == (stale, 2)
        assert await sess.creds_version() == 2
        assert_same(await sess.load_creds(), kept)
    async with backend.open() as store:
        sess = store.session("s1", namespace=backend.namespace)
        assert await sess.creds_version() == 2
        assert_same(await sess.load_creds(), kept)


async def test_expected_version_zero_on_new_session(store: AuthStore, backend: Backend) -> None:
    sess = store.session("new-one", namespace=backend.namespace)
    with pytest.raises(errors.ConflictError) as info:
        await sess.save_creds(node_creds(), expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 0)
    assert await sess.save_creds(node_creds(), expected_version=0) == 1


async def test_expected_version_zero_after_keys_only(store: AuthStore, backend: Backend) -> None:
    # A session that has keys but no creds yet is still at version 0.
    sess = store.session("s1", namespace=backend.namespace)
    await sess.keys.set({"pre-key": {1: _pair()}})
    assert await sess.creds_version() == 0
    assert await sess.save_creds(node_creds(), expected_version=0) == 1


@pytest.mark.parametrize("bad", [True, "1", 1.0])
async def test_expected_version_must_be_int(store: AuthStore, backend: Backend, bad: Any) -> None:
    sess = store.session("s1", namespace=backend.namespace)
    with pytest.raises(errors.InvalidInputError):
        await sess.save_creds(node_creds(), expected_version=bad)
    assert await sess.creds_version() == 0


async def test_pyaileys_dataclass_creds(backend: Backend) -> None:
    creds = init_auth_creds()
    async with backend.open() as store:
        assert await store.session("s1", namespace=backend.namespace).save_creds(creds) == 1
    async with backend.open() as store:
        loaded = await store.session("s1", namespace=backend.namespace).load_creds()
    assert loaded is not None
    assert_same(loaded, dataclasses.asdict(creds))
    assert creds_from_dict(loaded) == creds
    assert type(loaded["noise_key"]["private"]) is bytes


def _buffer_dict(raw: bytes) -> dict[str, str]:
    return {"type": "Buffer", "data": base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("noiseKey", lambda c: c.update(noiseKey=_buffer_dict(os.urandom(32)))),
        (
            "signedIdentityKey.public",
            lambda c: c["signedIdentityKey"].update(public=base64.b64encode(b"k" * 32).decode()),
        ),
        (
            "signedIdentityKey.private",
            lambda c: c["signedIdentityKey"].update(private=_buffer_dict(os.urandom(32))),
        ),
        ("signedPreKey.signature", lambda c: c["signedPreKey"].update(signature=os.urandom(10))),
        ("registrationId", lambda c: c.update(registrationId=1 << 14)),
        ("advSecretKey", lambda c: c.update(advSecretKey=os.urandom(32))),
        ("routingInfo", lambda c: c.update(routingInfo=_buffer_dict(b"r"))),
        (
            "signalIdentities[0].identifierKey",
            lambda c: c["signalIdentities"][0].update(identifierKey="x"),
        ),
    ],
)
async def test_malformed_creds_are_rejected_naming_the_field(
    store: AuthStore, backend: Backend, field: str, mutate: Any
) -> None:
    sess = store.session("s1", namespace=backend.namespace)
    good = node_creds()
    assert await sess.save_creds(good) == 1
    bad = node_creds()
    mutate(bad)
    with pytest.raises(errors.InvalidInputError) as info:
        await sess.save_creds(bad)
    assert f"creds.{field}" in str(info.value)
    assert await sess.creds_version() == 1
    assert_same(await sess.load_creds(), good)


async def test_malformed_pyaileys_creds_are_rejected(store: AuthStore, backend: Backend) -> None:
    sess = store.session("s1", namespace=backend.namespace)
    as_dict = dataclasses.asdict(init_auth_creds())
    as_dict["noise_key"] = _buffer_dict(os.urandom(32))
    with pytest.raises(errors.InvalidInputError, match=r"creds\.noise_key"):
        await sess.save_creds(as_dict)
    with pytest.raises(errors.InvalidInputError):
        await sess.save_creds("not creds")
    with pytest.raises(errors.InvalidInputError):
        await sess.save_creds([("noiseKey", _pair())])
    assert await sess.load_creds() is None


async def test_use_auth_state_round_trip(backend: Backend) -> None:
    async with backend.open() as store:
        state, save, _ = await use_auth_state(
            "s1", namespace=backend.namespace, init_creds=init_auth_creds, store=store
        )
        assert state.creds["registration_id"] == state.creds["registration_id"] & 0x3FFF
        assert await save() == 1
        state.creds["next_pre_key_id"] = 813
        assert await save({"next_pre_key_id": 813}) == 2  # an event payload is ignored
        await state.keys.set({"pre-key": {1: _pair()}})
        expected = dict(state.creds)
    async with backend.open() as store:
        state1, save1, _ = await use_auth_state(
            "s1", namespace=backend.namespace, init_creds=init_auth_creds, store=store
        )
        assert_same(state1.creds, expected)
        assert list(await state1.keys.get("pre-key", [1])) == ["1"]
        # A second writer on the same session saves first: the first one must not overwrite it.
        state2, save2, _ = await use_auth_state("s1", namespace=backend.namespace, store=store)
        state2.creds["platform"] = "smba"
        assert await save2() == 3
        state1.creds["platform"] = "android"
        with pytest.raises(errors.ConflictError) as info:
            await save1()
        assert (info.value.expected, info.value.actual) == (2, 3)
        loaded = await store.session("s1", namespace=backend.namespace).load_creds()
        assert loaded is not None
        assert loaded["platform"] == "smba"


async def test_use_auth_state_without_init_creds(store: AuthStore, backend: Backend) -> None:
    state, save, same = await use_auth_state("fresh", namespace=backend.namespace, store=store)
    assert same is store
    assert state.creds == {}
    assert await save() == 1
