"""pyaileys' real Signal stack with every record in the store, re-opened before every step.

Each ``step`` opens a fresh store on the same data and reloads the devices from it, as a process
that restarted between two messages would. Nothing survives between steps but what the store
kept: a lost or rolled-back record makes a later decrypt fail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from pyaileys import WhatsAppClient
from pyaileys.auth.creds import AuthenticationCreds, Contact

from baileys_store import open_store
from baileys_store.cli._signal_sim import (
    decode_text,
    encode_text,
    generate_pre_keys,
    start_session,
)
from baileys_store.errors import ConflictError, CorruptDataError
from baileys_store.integrations.pyaileys import use_pyaileys_auth_state
from tests.conftest import Backend
from tests.e2e._signal import GROUP, JIDS, app_state_key_share, b64, deliver_to_client, proto, step


async def send(backend: Backend, sender: str, receiver: str, text: str) -> tuple[str, bytes]:
    async with step(backend, sender) as (dev,):
        return await dev.signal.encrypt_message(JIDS[receiver], data=encode_text(text))


async def receive(backend: Backend, receiver: str, sender: str, sealed: tuple[str, bytes]) -> str:
    async with step(backend, receiver) as (dev,):
        kind, ciphertext = sealed
        return decode_text(
            await dev.signal.decrypt_message(JIDS[sender], message_type=kind, ciphertext=ciphertext)
        )


async def test_signal_end_to_end(backend: Backend) -> None:
    # Fresh creds for every device, persisted at once: the identity is the same on reload.
    names = ("alice", "bob", "bob-phone", "carol")
    async with step(backend, *names) as devices:
        identities = {d.session_id: d.state.creds.signed_identity_key.public for d in devices}
        assert all(isinstance(d.state.creds, AuthenticationCreds) for d in devices)
    async with step(backend, *names) as devices:
        assert {
            d.session_id: d.state.creds.signed_identity_key.public for d in devices
        } == identities

    # Bob mints one-time pre-keys into the key store; the creds counter follows.
    async with step(backend, "bob") as (bob,):
        assert await generate_pre_keys(bob, 5) == [1, 2, 3, 4, 5]
    async with step(backend, "bob") as (bob,):
        stored = await bob.state.keys.get("pre-key", ["1", "2", "3", "4", "5"])
        assert sorted(stored) == ["1", "2", "3", "4", "5"]
        assert all(len(v["public"]) == len(v["private"]) == 32 for v in stored.values())
        assert bob.state.creds.next_pre_key_id == 6

    # X3DH from Alice with Bob's pre-key 1, then the first message is a pkmsg.
    async with step(backend, "alice", "bob") as (alice, bob):
        await start_session(alice, bob, 1)
    sealed = await send(backend, "alice", "bob", "hello bob")
    assert sealed[0] == "pkmsg"
    assert await receive(backend, "bob", "alice", sealed) == "hello bob"
    async with step(backend, "bob") as (bob,):
        assert sorted(await bob.state.keys.get("pre-key", ["1", "2", "3", "4", "5"])) == [
            "2",
            "3",
            "4",
            "5",
        ]
        assert await bob.state.keys.get("identity-key", ["5511900000001.0"])

    # Ratchet ping-pong, every encrypt and decrypt after a re-open.
    for n in range(4):
        sealed = await send(backend, "bob", "alice", f"pong {n}")
        assert sealed[0] == "msg"
        assert await receive(backend, "alice", "bob", sealed) == f"pong {n}"
        sealed = await send(backend, "alice", "bob", f"ping {n}")
        assert sealed[0] == "msg"  # Alice saw Bob's reply: no more pre-key wrapping
        assert await receive(backend, "bob", "alice", sealed) == f"ping {n}"

    # Out-of-order delivery: three sent, received 3, 1, 2 (skipped message keys are stored).
    batch = [await send(backend, "alice", "bob", f"ooo {n}") for n in (1, 2, 3)]
    for n in (3, 1, 2):
        assert await receive(backend, "bob", "alice", batch[n - 1]) == f"ooo {n}"
    sealed = await send(backend, "bob", "alice", "after the reorder")
    assert await receive(backend, "alice", "bob", sealed) == "after the reorder"

    await _group_round_trips(backend)
    await _app_state_key_share(backend)

    # creds.update through the client's own emitter lands in the store.
    async with backend.open() as store:
        state, save_creds = await use_pyaileys_auth_state(store, "bob", namespace=backend.namespace)
        before = save_creds.version
        client = WhatsAppClient(auth=state)
        client.on("creds.update", save_creds)
        state.creds.me = Contact(id=JIDS["bob"], name="Bob")
        state.creds.registered = True
        await client.socket.events.emit("creds.update", state.creds)
        assert save_creds.version == before + 1
    async with step(backend, "bob") as (bob,):
        assert bob.state.creds.me == Contact(id=JIDS["bob"], name="Bob")
        assert bob.state.creds.registered is True
        assert bob.state.creds.my_app_state_key_id == b64(b"\x00\x00\x00\x01key-1")
    # ... and Bob still talks to Alice after all those creds saves.
    sealed = await send(backend, "bob", "alice", "still here")
    assert await receive(backend, "alice", "bob", sealed) == "still here"


async def _group_round_trips(backend: Backend) -> None:
    """Sender keys in a 3-member group: distribution once per sender, then plain skmsg."""
    members = ("alice", "bob", "carol")
    for rnd in range(2):
        for sender in members:
            text = f"group {rnd} from {sender}"
            async with step(backend, sender) as (dev,):
                ciphertext, distribution = await dev.signal.encrypt_group_message(
                    group_jid=GROUP, me_jid=JIDS[sender], data=encode_text(text)
                )
            for receiver in (m for m in members if m != sender):
                async with step(backend, receiver) as (dev,):
                    if rnd == 0:
                        await dev.signal.process_sender_key_distribution_message(
                            GROUP, author_jid=JIDS[sender], distribution_bytes=distribution
                        )
                    got = await dev.signal.decrypt_group_message(
                        group_jid=GROUP, author_jid=JIDS[sender], ciphertext=ciphertext
                    )
                    assert decode_text(got) == text
    async with step(backend, "carol") as (carol,):
        names = [f"{GROUP}::5511900000001::0", f"{GROUP}::5511900000002::3"]
        found = await carol.state.keys.get("sender-key", names)
        assert sorted(found) == sorted(names)
        assert all(isinstance(v, bytes) for v in found.values())


async def _app_state_key_share(backend: Backend) -> None:
    """Bob's phone shares an app-state key over Signal; Bob's WhatsAppClient stores it."""
    key_id, key_data = b"\x00\x00\x00\x01key-1", os.urandom(32)
    async with step(backend, "bob-phone", "bob") as (phone, bob):
        await start_session(phone, bob, 2)
        kind, ciphertext = await phone.signal.encrypt_message(
            JIDS["bob"], data=app_state_key_share(key_id, key_data, 1_700_000_000)
        )
    assert kind == "pkmsg"
    event = await deliver_to_client(backend, "bob", JIDS["bob-phone"], kind, ciphertext)
    assert event == {"count": 1, "latest": b64(key_id)}
    async with step(backend, "bob") as (bob,):
        assert bob.state.creds.my_app_state_key_id == b64(key_id)
        stored = await bob.state.keys.get("app-state-sync-key", [b64(key_id)])
        data = proto.Message.AppStateSyncKeyData()
        data.ParseFromString(stored[b64(key_id)])
        assert (data.keyData, data.timestamp) == (key_data, 1_700_000_000)
        assert "2" not in await bob.state.keys.get("pre-key", ["2"])  # consumed by the pkmsg


async def test_stale_creds_save_conflicts(backend: Backend) -> None:
    # Two loaders race to create the same new session: one identity wins and both get it.
    # Then the stale one's save must not overwrite the other's.
    async with backend.open() as store:
        (state_a, save_a), (state_b, save_b) = await asyncio.gather(
            use_pyaileys_auth_state(store, "dev", namespace=backend.namespace),
            use_pyaileys_auth_state(store, "dev", namespace=backend.namespace),
        )
        assert state_a.creds == state_b.creds
        assert save_a.version == save_b.version == 1
        state_a.creds.platform = "a"
        await save_a()
        state_b.creds.platform = "b"
        with pytest.raises(ConflictError):
            await save_b()
    async with backend.open() as store:
        state, _ = await use_pyaileys_auth_state(store, "dev", namespace=backend.namespace)
        assert state.creds.platform == "a"


async def test_camel_case_creds_are_refused_clearly() -> None:
    # Creds in Node Baileys' shape cannot become pyaileys creds: say so, never start afresh.
    async with open_store("memory://") as store:
        await store.session("node").save_creds({"registrationId": 7, "advSecretKey": "x"})
        with pytest.raises(CorruptDataError, match="missing field 'noise_key'"):
            await use_pyaileys_auth_state(store, "node")
        assert (await store.session("node").load_creds()) == {
            "registrationId": 7,
            "advSecretKey": "x",
        }


def test_pyaileys_is_optional() -> None:
    code = (
        "import sys\n"
        "import baileys_store, baileys_store.cli, baileys_store.integrations\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(baileys_store.cli.main, ['--help']).exit_code == 0\n"
        "assert 'pyaileys' not in sys.modules, 'baileys_store imported pyaileys'\n"
        "sys.modules['pyaileys'] = None  # as if not installed\n"
        "try:\n"
        "    import baileys_store.integrations.pyaileys\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'baileys-store[pyaileys]'" in out.stdout
