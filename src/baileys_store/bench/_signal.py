"""Drive pyaileys' real Signal stack on a store: X3DH, a 1:1 ping-pong, group messages.

Two accounts (alice, bob) live in two sessions of the store under test. Every Signal step loads
and stores its records through the store, as a running client does, so the figures show what
the store adds to real message processing (the ``memory`` row is the crypto-only reference).
"""

from __future__ import annotations

import time
from typing import Any

from pyaileys.auth.state import AuthenticationState
from pyaileys.auth.utils import init_auth_creds
from pyaileys.crypto.curve import DefaultCurve25519Provider
from pyaileys.signal.repository import PreKeyBundle, PreKeyBundleKey, SignalRepository
from pyaileys.signal.util import signal_pubkey

from ._stats import summarize
from ._stores import Target

ALICE = "5511900000001@s.whatsapp.net"
BOB = "5511900000002@s.whatsapp.net"
ALICE_DEVICE = "5511900000001:0@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


async def signal_run(target: Target, messages: int, tag: str) -> dict[str, Any]:
    """X3DH from alice to bob, ``messages`` round trips, then ``messages`` group messages.

    Returns latency summaries (ms) of the session set-up, one 1:1 round trip (encrypt + decrypt
    each way) and one group message (encrypt + decrypt). Raises if any plaintext comes back
    different: a store that loses or corrupts a record fails the run.
    """
    curve = DefaultCurve25519Provider()
    alice_creds, bob_creds = init_auth_creds(), init_auth_creds()
    # Every store under test offers get/set; the Signal stack never calls clear().
    alice_keys: Any = target.keys(f"sig-{tag}-alice")
    bob_keys: Any = target.keys(f"sig-{tag}-bob")
    alice_state = AuthenticationState(alice_creds, alice_keys)
    bob_state = AuthenticationState(bob_creds, bob_keys)
    alice, bob = SignalRepository(alice_state), SignalRepository(bob_state)

    one_time = {str(n): curve.generate_keypair() for n in range(1, 6)}
    await bob_state.keys.set(
        {"pre-key": {k: {"public": v.public, "private": v.private} for k, v in one_time.items()}}
    )
    spk = bob_creds.signed_pre_key
    bundle = PreKeyBundle(
        registration_id=bob_creds.registration_id,
        identity_key=signal_pubkey(bob_creds.signed_identity_key.public),
        signed_pre_key=PreKeyBundleKey(
            spk.key_id, signal_pubkey(spk.key_pair.public), spk.signature
        ),
        pre_key=PreKeyBundleKey(1, signal_pubkey(one_time["1"].public)),
    )
    start = time.perf_counter_ns()
    await alice.inject_outgoing_session(BOB, bundle)
    setup_ms = (time.perf_counter_ns() - start) / 1e6

    pings: list[float] = []
    for n in range(messages):
        text = b"ping %d" % n
        start = time.perf_counter_ns()
        kind, ct = await alice.encrypt_message(BOB, data=text)
        got = await bob.decrypt_message(ALICE, message_type=kind, ciphertext=ct)
        kind, ct = await bob.encrypt_message(ALICE, data=b"pong" + got)
        back = await alice.decrypt_message(BOB, message_type=kind, ciphertext=ct)
        pings.append((time.perf_counter_ns() - start) / 1e6)
        if back != b"pong" + text:
            raise RuntimeError(f"signal ping-pong {n} came back wrong")
    if (await bob_state.keys.get("pre-key", ["1"])).get("1") is not None:
        raise RuntimeError("the consumed one-time pre-key was not deleted")

    groups: list[float] = []
    distributed = False
    for n in range(messages):
        text = b"group %d" % n
        start = time.perf_counter_ns()
        ct, skdm = await alice.encrypt_group_message(
            group_jid=GROUP, me_jid=ALICE_DEVICE, data=text
        )
        if not distributed:
            await bob.process_sender_key_distribution_message(
                GROUP, author_jid=ALICE_DEVICE, distribution_bytes=skdm
            )
            distributed = True
        got = await bob.decrypt_group_message(
            group_jid=GROUP, author_jid=ALICE_DEVICE, ciphertext=ct
        )
        groups.append((time.perf_counter_ns() - start) / 1e6)
        if got != text:
            raise RuntimeError(f"group message {n} came back wrong")
    return {
        "setup_ms": setup_ms,
        "roundtrip_1to1": summarize(pings),
        "group_message": summarize(groups),
    }
