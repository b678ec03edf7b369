"""Helpers of the pyaileys end-to-end test: the cast, and one store opening per step."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pyaileys import WhatsAppClient
from pyaileys.messages import encode_wa_message_bytes
from pyaileys.proto import WAProto_pb2
from pyaileys.wabinary.types import BinaryNode

from baileys_store.cli._signal_sim import Device, load_device, user_jid
from baileys_store.integrations.pyaileys import use_pyaileys_auth_state
from tests.conftest import Backend

proto: Any = WAProto_pb2

GROUP = "120363000000000042@g.us"
# Bob runs pyaileys as a companion device (3) of his phone (device 0).
JIDS = {
    "alice": user_jid(1),
    "bob": user_jid(2, device=3),
    "bob-phone": user_jid(2),
    "carol": user_jid(3),
}


@asynccontextmanager
async def step(backend: Backend, *names: str) -> AsyncIterator[tuple[Device, ...]]:
    """Open the store afresh and load the named devices from it, as a restarted process does."""
    async with backend.open() as store:
        yield tuple(
            [
                await load_device(store, name, JIDS[name], namespace=backend.namespace)
                for name in names
            ]
        )


def app_state_key_share(key_id: bytes, key_data: bytes, timestamp: int) -> bytes:
    """The padded ``Message`` a phone sends to share one app-state sync key."""
    msg = proto.Message()
    prot = msg.protocolMessage
    prot.type = proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_SHARE
    key = prot.appStateSyncKeyShare.keys.add()
    key.keyId.keyId = key_id
    key.keyData.keyData = key_data
    key.keyData.timestamp = timestamp
    return bytes(encode_wa_message_bytes(msg.SerializeToString()))


async def deliver_to_client(
    backend: Backend, session_id: str, sender_jid: str, kind: str, ciphertext: bytes
) -> dict[str, Any]:
    """Hand one ``<message><enc/></message>`` stanza to a pyaileys ``WhatsAppClient``.

    The client is built on the stored auth state with ``save_creds`` as its ``creds.update``
    listener, never connected: the stanza goes through its event emitter to its own handler
    (decrypt, parse, key-share handling). Returns the ``app_state.keys`` event payload.
    """
    async with backend.open() as store:
        state, save_creds = await use_pyaileys_auth_state(
            store, session_id, namespace=backend.namespace
        )
        client = WhatsAppClient(auth=state)
        client.on("creds.update", save_creds)
        events = client.socket.events
        done = events.wait_for_future("app_state.keys")
        failed = [
            events.wait_for_future(name)
            for name in (
                "message.decrypt_error",
                "message.decode_error",
                "app_state.key_share_error",
            )
        ]
        stanza = BinaryNode(
            "message",
            {"from": sender_jid, "id": "3EB0E2E0000000000001", "t": "1700000000"},
            [BinaryNode("enc", {"v": "2", "type": kind}, ciphertext)],
        )
        await events.emit("stanza.message", stanza)
        finished, _ = await asyncio.wait(
            [done, *failed], timeout=10, return_when=asyncio.FIRST_COMPLETED
        )
        # The handler runs in pyaileys' own task: let it finish before the store closes.
        pending = [t for t in asyncio.all_tasks() if t.get_name() == "pyaileys.decrypt.enc"]
        await asyncio.gather(*pending)
        for fut in failed:
            if fut in finished:
                raise AssertionError(f"client reported an error: {fut.result()}")
            fut.cancel()
        assert done in finished, "the client never stored the app-state key"
        payload: dict[str, Any] = done.result()
        return payload


def b64(raw: bytes) -> str:
    """Standard base64, the id pyaileys gives app-state sync keys."""
    return base64.b64encode(raw).decode("ascii")
