"""Simulated WhatsApp devices on pyaileys' real Signal stack, every record kept in an AuthStore.

Shared by ``baileys-store demo`` and the end-to-end test. A device's creds and Signal keys are
loaded from the store with :func:`use_pyaileys_auth_state`; the WhatsApp server's part (handing
out pre-key bundles, carrying ciphertexts) is played in-process. Needs pyaileys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyaileys.auth.state import AuthenticationState, SignalKeyStore
from pyaileys.crypto.curve import DefaultCurve25519Provider
from pyaileys.messages import decode_wa_message_bytes, encode_wa_message_bytes
from pyaileys.proto import WAProto_pb2
from pyaileys.signal.repository import PreKeyBundle, PreKeyBundleKey, SignalRepository
from pyaileys.signal.util import signal_pubkey

from .._store import AuthStore
from ..integrations.pyaileys import PyaileysCredsSaver, use_pyaileys_auth_state

__all__ = [
    "Device",
    "decode_message",
    "decode_text",
    "encode_text",
    "generate_pre_keys",
    "load_device",
    "pre_key_bundle",
    "sender_key_distribution",
    "start_session",
    "user_jid",
]

_CURVE = DefaultCurve25519Provider()
proto: Any = WAProto_pb2  # generated protobuf module: no static types


def user_jid(n: int, device: int = 0) -> str:
    """A phone-number JID for simulated account ``n`` (``device`` 0 is the phone)."""
    user = f"55119{n:08d}"
    return f"{user}:{device}@s.whatsapp.net" if device else f"{user}@s.whatsapp.net"


@dataclass(slots=True)
class Device:
    """One device: its JID, auth state (creds + keys from the store) and Signal repository."""

    jid: str
    session_id: str
    state: AuthenticationState
    save_creds: PyaileysCredsSaver
    signal: SignalRepository


async def load_device(
    store: AuthStore,
    session_id: str,
    jid: str,
    *,
    namespace: str,
    wrap_keys: Callable[[SignalKeyStore], SignalKeyStore] | None = None,
) -> Device:
    """Load (or create) a device from the store, as a client process does when it starts.

    ``wrap_keys`` lets the caller put a wrapper (e.g. a counter) around the key store.
    """
    state, save_creds = await use_pyaileys_auth_state(store, session_id, namespace=namespace)
    if wrap_keys is not None:
        state.keys = wrap_keys(state.keys)
    return Device(jid, session_id, state, save_creds, SignalRepository(state))


async def generate_pre_keys(device: Device, count: int) -> list[int]:
    """Mint ``count`` one-time pre-keys as pyaileys does before an upload.

    The key pairs go into the key store (``pre-key`` → ``{public, private}``) in one call, then
    the creds counters advance and the creds are saved. Returns the new ids.
    """
    creds = device.state.creds
    start = int(creds.next_pre_key_id)
    ids = list(range(start, start + count))
    pairs = {str(i): _CURVE.generate_keypair() for i in ids}
    await device.state.keys.set(
        {"pre-key": {i: {"public": kp.public, "private": kp.private} for i, kp in pairs.items()}}
    )
    creds.next_pre_key_id = start + count
    creds.first_unuploaded_pre_key_id = max(int(creds.first_unuploaded_pre_key_id), start + count)
    await device.save_creds()
    return ids


async def pre_key_bundle(device: Device, pre_key_id: int | None) -> PreKeyBundle:
    """The bundle the WhatsApp server hands out for ``device``.

    Built from the device's creds (registration id, identity key, signed pre-key) and, when
    ``pre_key_id`` is given, that one-time pre-key read from its key store. Public keys carry
    the 0x05 type prefix.

    Raises:
        LookupError: the one-time pre-key is not in the store (already consumed).
    """
    creds = device.state.creds
    one_time = None
    if pre_key_id is not None:
        found = await device.state.keys.get("pre-key", [str(pre_key_id)])
        if str(pre_key_id) not in found:
            raise LookupError(f"pre-key {pre_key_id} of {device.session_id} is not stored")
        one_time = PreKeyBundleKey(pre_key_id, signal_pubkey(found[str(pre_key_id)]["public"]))
    spk = creds.signed_pre_key
    return PreKeyBundle(
        registration_id=int(creds.registration_id),
        identity_key=signal_pubkey(creds.signed_identity_key.public),
        signed_pre_key=PreKeyBundleKey(
            spk.key_id, signal_pubkey(spk.key_pair.public), spk.signature
        ),
        pre_key=one_time,
    )


async def start_session(sender: Device, receiver: Device, pre_key_id: int | None) -> None:
    """X3DH: ``sender`` opens an outgoing Signal session to ``receiver``'s bundle."""
    bundle = await pre_key_bundle(receiver, pre_key_id)
    await sender.signal.inject_outgoing_session(receiver.jid, bundle)


def encode_text(text: str) -> bytes:
    """A WhatsApp ``Message`` with a text body, serialized and randomly padded, as sent."""
    msg = proto.Message()
    msg.conversation = text
    return bytes(encode_wa_message_bytes(msg.SerializeToString()))


def sender_key_distribution(group_jid: str, distribution: bytes) -> bytes:
    """The padded ``Message`` that carries a sender key to a group member over 1:1 Signal."""
    msg = proto.Message()
    msg.senderKeyDistributionMessage.groupId = group_jid
    msg.senderKeyDistributionMessage.axolotlSenderKeyDistributionMessage = distribution
    return bytes(encode_wa_message_bytes(msg.SerializeToString()))


def decode_message(padded: bytes) -> Any:
    """Unpad and parse a decrypted WhatsApp ``Message``."""
    msg = proto.Message()
    msg.ParseFromString(decode_wa_message_bytes(padded))
    return msg


def decode_text(padded: bytes) -> str:
    """The text body of a decrypted WhatsApp ``Message``."""
    return str(decode_message(padded).conversation)
