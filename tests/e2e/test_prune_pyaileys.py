"""``prune_prekeys`` next to a real pyaileys client: nothing it still needs is removed.

Bob runs pyaileys on the store. His pre-keys are minted by pyaileys' own connect-time code
(``WASocket._upload_prekeys_to_server_if_required``), answered by a fake WhatsApp server that
keeps the uploaded pre-keys from the upload IQ and hands them out oldest first. Many uploads
fail first (pyaileys keeps those keys: the server never saw them), then batches go up, are
handed out to peers and topped up over restarts. After pruning (the default margin, then the
tightest one that still covers the server's pool and the bundles in flight) every pre-key the
server can still hand out opens a session, a bundle handed out before the prune still works,
and established sessions go on; a peer that names a pruned id fails, so the proof can fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pyaileys import WhatsAppClient
from pyaileys.signal.repository import PreKeyBundle, PreKeyBundleKey, SignalError
from pyaileys.signal.util import signal_pubkey
from pyaileys.wabinary.types import BinaryNode

from baileys_store import AuthStore
from baileys_store.cli._signal_sim import Device, decode_text, encode_text, load_device, user_jid
from baileys_store.integrations._prune import DEFAULT_KEEP, prune_prekeys
from tests.conftest import Backend

BOB = user_jid(2, device=3)


@pytest.fixture(params=["sqlite", "postgres"])
def on(request: pytest.FixtureRequest) -> Backend:
    value: Any = request.getfixturevalue(f"backend_{request.param}")
    assert isinstance(value, Backend)
    return value


def _child(node: BinaryNode, tag: str) -> BinaryNode:
    assert isinstance(node.content, list)
    return next(c for c in node.content if isinstance(c, BinaryNode) and c.tag == tag)


def _bytes(node: BinaryNode) -> bytes:
    assert isinstance(node.content, bytes | bytearray)
    return bytes(node.content)


class FakeServer:
    """WhatsApp's side of pre-keys: count, upload, digest, and bundles handed out in order."""

    def __init__(self) -> None:
        self.pool: list[tuple[int, bytes]] = []  # (id, public key) as uploaded, oldest first
        self.seen: dict[int, bytes] = {}  # every pre-key an upload IQ carried, failed or not
        self.failing = False
        self.bad_digest = False
        self.bundle_base: tuple[int, bytes, PreKeyBundleKey] | None = None

    async def query(self, node: BinaryNode, *, timeout_s: float = 60.0) -> BinaryNode:
        assert isinstance(node.content, list)
        first = node.content[0]
        assert isinstance(first, BinaryNode)
        if first.tag == "count":
            return BinaryNode("iq", {}, [BinaryNode("count", {"value": str(len(self.pool))})])
        if first.tag == "digest":
            return BinaryNode("iq", {}, [] if self.bad_digest else [BinaryNode("digest", {})])
        keys = [
            (int.from_bytes(_bytes(_child(k, "id")), "big"), _bytes(_child(k, "value")))
            for k in _child(node, "list").content or []
            if isinstance(k, BinaryNode)
        ]
        self.seen.update(keys)
        if self.failing:
            raise TimeoutError("upload lost")
        skey = _child(node, "skey")
        spk = PreKeyBundleKey(
            int.from_bytes(_bytes(_child(skey, "id")), "big"),
            signal_pubkey(_bytes(_child(skey, "value"))),
            _bytes(_child(skey, "signature")),
        )
        registration = int.from_bytes(_bytes(_child(node, "registration")), "big")
        self.bundle_base = (registration, signal_pubkey(_bytes(_child(node, "identity"))), spk)
        self.pool.extend(keys)
        return BinaryNode("iq", {"type": "result"}, None)

    def bundle(self, pre_key_id: int | None = None) -> PreKeyBundle:
        """The next bundle (the oldest pre-key), or one naming ``pre_key_id`` as uploaded."""
        assert self.bundle_base is not None
        if pre_key_id is None:
            pre_key_id, public = self.pool.pop(0)
        else:
            public = self.seen[pre_key_id]
        registration, identity, spk = self.bundle_base
        return PreKeyBundle(
            registration, identity, spk, PreKeyBundleKey(pre_key_id, signal_pubkey(public))
        )


@asynccontextmanager
async def bob_connects(
    backend: Backend, server: FakeServer, times: int = 1
) -> AsyncIterator[tuple[AuthStore, Device]]:
    """A process start of Bob's client: load from the store, run pyaileys' pre-key check."""
    async with backend.open() as store:
        bob = await load_device(store, "bob", BOB, namespace=backend.namespace)
        client = WhatsAppClient(auth=bob.state)
        client.on("creds.update", bob.save_creds)
        client.socket.query = server.query  # type: ignore[method-assign]
        for _ in range(times):
            await client.socket._upload_prekeys_to_server_if_required()
        yield store, bob


async def peer(store: AuthStore, n: int, bundle: PreKeyBundle, backend: Backend) -> Device:
    dev = await load_device(store, f"peer-{n}", user_jid(100 + n), namespace=backend.namespace)
    await dev.signal.inject_outgoing_session(BOB, bundle)
    return dev


async def say(sender: Device, receiver: Device, text: str) -> None:
    kind, ciphertext = await sender.signal.encrypt_message(receiver.jid, data=encode_text(text))
    got = await receiver.signal.decrypt_message(
        sender.jid, message_type=kind, ciphertext=ciphertext
    )
    assert decode_text(got) == text


async def pre_key_ids(store: AuthStore, backend: Backend) -> set[int]:
    ids = (await store.session("bob", namespace=backend.namespace).key_ids())["pre-key"]
    return set(map(int, ids))


async def test_pruning_keeps_every_pre_key_pyaileys_can_still_be_asked_for(on: Backend) -> None:
    server = FakeServer()
    server.failing = True  # 100 connects whose upload is lost: 3,000 keys the server never saw
    async with bob_connects(on, server, times=100) as (_, bob):
        assert bob.state.creds.first_unuploaded_pre_key_id == 3001
    server.failing = False
    async with bob_connects(on, server) as (store, bob):  # the server has none: 30 go up
        assert [i for i, _ in server.pool] == list(range(3001, 3031))
        alice = await peer(store, 0, server.bundle(), on)
        await say(alice, bob, "hi bob")
        await say(bob, alice, "hi alice")  # an established session, both ways
        dave = await peer(store, 1, server.bundle(), on)
        await say(dave, bob, "first")
        dave_second = await dave.signal.encrypt_message(BOB, data=encode_text("second"))
        assert dave_second[0] == "pkmsg"  # no reply yet: still a pre-key message
    n = 2
    for day in range(8):  # peers write, Bob restarts, pyaileys tops up when the pool is low
        server.bad_digest = day == 3
        async with bob_connects(on, server) as (store, bob):
            for _ in range(6 if day != 2 else 5):
                await say(await peer(store, n, server.bundle(), on), bob, f"day {day}")
                n += 1
            if day == 2:  # a bundle handed out whose first message comes later
                late_bundle = server.bundle()
                late = await peer(store, n, late_bundle, on)
                late_msg = await late.signal.encrypt_message(BOB, data=encode_text("late"))
                n += 1
            if server.bad_digest:
                client = WhatsAppClient(auth=bob.state)
                client.on("creds.update", bob.save_creds)
                client.socket.query = server.query  # type: ignore[method-assign]
                await client.socket._digest_key_bundle()  # pyaileys uploads 10 more anyway
    assert late_bundle.pre_key is not None
    in_flight = late_bundle.pre_key.key_id
    on_server = {i for i, _ in server.pool}

    async with on.open() as store:
        creds = await store.session("bob", namespace=on.namespace).load_creds()
        assert creds is not None
        mark = creds["first_unuploaded_pre_key_id"]
        needed = {*on_server, in_flight}
        before = await pre_key_ids(store, on)
        assert needed <= before
        report = await prune_prekeys(store, namespace=on.namespace, session="bob")
        assert report.sessions[0].removed > 1000  # the lost uploads, mostly
        after = await pre_key_ids(store, on)
        # pyaileys' signed pre-key id is 1: a pre-key 1 stays whatever the margin.
        assert after == {i for i in before if i >= mark - DEFAULT_KEEP} | {1}
        # The tightest margin that still covers the server's pool and the bundle in flight.
        tight = mark - min(needed)
        again = await prune_prekeys(store, namespace=on.namespace, keep=tight)
        assert again.removed > 0
        assert (
            needed <= await pre_key_ids(store, on) <= needed | {1} | set(range(mark - tight, mark))
        )

    async with bob_connects(on, server) as (store, bob):
        late = await load_device(store, late.session_id, late.jid, namespace=on.namespace)
        got = await bob.signal.decrypt_message(
            late.jid, message_type="pkmsg", ciphertext=late_msg[1]
        )
        assert decode_text(got) == "late"
        dave = await load_device(store, dave.session_id, dave.jid, namespace=on.namespace)
        got = await bob.signal.decrypt_message(
            dave.jid, message_type="pkmsg", ciphertext=dave_second[1]
        )
        assert decode_text(got) == "second"
        alice = await load_device(store, alice.session_id, alice.jid, namespace=on.namespace)
        await say(alice, bob, "still here")
        await say(bob, alice, "me too")
        while server.pool:  # every pre-key the server still holds opens a session
            await say(await peer(store, n, server.bundle(), on), bob, "new")
            n += 1
        # The control: a peer naming a pruned id fails, so the checks above can fail.
        gone = await peer(store, n, server.bundle(2), on)
        kind, ciphertext = await gone.signal.encrypt_message(BOB, data=encode_text("lost"))
        with pytest.raises(SignalError, match="missing one-time pre-key 2"):
            await bob.signal.decrypt_message(gone.jid, message_type=kind, ciphertext=ciphertext)
        n += 1
    async with bob_connects(on, server) as (store, bob):  # the pool ran dry: 30 more
        assert len(server.pool) == 30
        await say(await peer(store, n, server.bundle(), on), bob, "after the refill")
