"""The simulation behind ``baileys-store demo``: devices, 1:1 chats and a group, all in the store.

Every device is a pyaileys ``SignalRepository`` whose creds and keys live in the store. The
WhatsApp server's part is played in-process: it keeps each device's uploaded one-time pre-keys
to hand out in bundles and carries ciphertexts straight to the recipient. Group messages follow
pyaileys' own send path: ``sender-key-memory`` says which members still need the sender key,
which then travels to them inside a 1:1 Signal message.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyaileys.auth.state import SignalKeyStore
from rich.progress import Progress

from .._model import session_addr
from .._store import AuthStore
from ..errors import StoreError
from ._demo_stats import CountingKeyStore, DemoStats
from ._signal_sim import (
    Device,
    decode_message,
    decode_text,
    encode_text,
    generate_pre_keys,
    load_device,
    sender_key_distribution,
    start_session,
    user_jid,
)

GROUP = "120363000000000001@g.us"
PAIRING_PRE_KEYS = 812  # what a client mints and uploads when it pairs


@dataclass
class DemoResult:
    """What the demo did and what the store holds afterwards."""

    stats: DemoStats = field(default_factory=DemoStats)
    failures: list[str] = field(default_factory=list)
    store_sessions: int = 0
    signal_sessions: int = 0
    records: int = 0
    bytes_stored: int = 0
    wall_seconds: float = 0.0


class _Sim:
    def __init__(self, store: AuthStore, namespace: str, result: DemoResult) -> None:
        self.store = store
        self.namespace = namespace
        self.result = result
        self.stats = result.stats
        self.devices: list[Device] = []
        self.counters: dict[str, CountingKeyStore] = {}
        self.server_pre_keys: dict[str, deque[int]] = {}

    def _wrap(self, session_id: str) -> Callable[[SignalKeyStore], SignalKeyStore]:
        def wrap(keys: SignalKeyStore) -> SignalKeyStore:
            counter = self.counters[session_id] = CountingKeyStore(keys, self.stats)
            return counter

        return wrap

    async def pair(self, n: int) -> None:
        """Create device ``n`` (fresh creds, saved) and mint its pre-keys."""
        session_id = f"device-{n}"
        device = await load_device(
            self.store,
            session_id,
            user_jid(n + 1),
            namespace=self.namespace,
            wrap_keys=self._wrap(session_id),
        )
        ids = await generate_pre_keys(device, PAIRING_PRE_KEYS)
        self.server_pre_keys[device.jid] = deque(ids)
        self.devices.append(device)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Count a Signal failure in the block and go on; let store failures through."""
        try:
            yield
        except StoreError:
            raise  # the store failed, not the crypto: the CLI reports it
        except Exception as exc:
            if isinstance(exc.__cause__, StoreError):  # pyaileys wraps some store errors
                raise exc.__cause__ from None
            self.result.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def _check(self, ok: bool, counter: str, what: str) -> None:
        if ok:
            self.stats.add(counter)
        else:
            self.result.failures.append(f"{what}: decrypted to a different text")

    async def _ensure_session(self, sender: Device, receiver: Device) -> None:
        if await sender.signal.validate_session(receiver.jid):
            return
        pool = self.server_pre_keys[receiver.jid]
        await start_session(sender, receiver, pool.popleft() if pool else None)
        self.stats.add("X3DH handshakes")

    async def _direct(self, sender: Device, receiver: Device, payload: bytes) -> bytes:
        await self._ensure_session(sender, receiver)
        with self.stats.timed("1:1 encrypt"):
            kind, ciphertext = await sender.signal.encrypt_message(receiver.jid, data=payload)
        with self.stats.timed("1:1 decrypt"):
            return await receiver.signal.decrypt_message(
                sender.jid, message_type=kind, ciphertext=ciphertext
            )

    async def chat(self, sender: Device, receiver: Device, text: str) -> None:
        """One 1:1 message, decrypted by the receiver and checked."""
        self.stats.add("1:1 sent")
        what = f"{sender.session_id} -> {receiver.session_id}"
        with self._guard(what):
            got = await self._direct(sender, receiver, encode_text(text))
            self._check(decode_text(got) == text, "1:1 decrypted", what)

    async def group_send(self, sender: Device, text: str) -> None:
        """One group message: sender keys to members that lack it, then every member decrypts."""
        self.stats.add("group sent")
        members = [d for d in self.devices if d is not sender]
        self.stats.add("group decrypts expected", len(members))
        with self._guard(f"group send by {sender.session_id}"):
            found = await sender.state.keys.get("sender-key-memory", [GROUP])
            memory: dict[str, bool] = dict(found.get(GROUP) or {})
            with self.stats.timed("group encrypt"):
                ciphertext, distribution = await sender.signal.encrypt_group_message(
                    group_jid=GROUP, me_jid=sender.jid, data=encode_text(text)
                )
            fresh = [m for m in members if not memory.get(m.jid)]
            for member in fresh:
                with self._guard(f"sender key {sender.session_id} -> {member.session_id}"):
                    got = await self._direct(
                        sender, member, sender_key_distribution(GROUP, distribution)
                    )
                    skdm = decode_message(got).senderKeyDistributionMessage
                    await member.signal.process_sender_key_distribution_message(
                        str(skdm.groupId),
                        author_jid=sender.jid,
                        distribution_bytes=bytes(skdm.axolotlSenderKeyDistributionMessage),
                    )
                    memory[member.jid] = True
                    self.stats.add("sender keys distributed")
            if fresh:
                await sender.state.keys.set({"sender-key-memory": {GROUP: memory}})
            for member in members:
                what = f"group {sender.session_id} -> {member.session_id}"
                with self._guard(what):
                    with self.stats.timed("group decrypt"):
                        got = await member.signal.decrypt_group_message(
                            group_jid=GROUP, author_jid=sender.jid, ciphertext=ciphertext
                        )
                    self._check(decode_text(got) == text, "group decrypted", what)

    async def measure(self) -> None:
        """Read back every record left in the store: count them and sum their stored size."""
        result = self.result
        for device in self.devices:
            addr = session_addr(self.namespace, device.session_id)
            for key_type, ids in self.counters[device.session_id].live.items():
                blobs = await self.store.durable.get_keys(addr, key_type, sorted(ids))
                result.records += len(blobs)
                result.bytes_stored += sum(len(b) for b in blobs.values())
                if key_type == "session":
                    result.signal_sessions += len(blobs)
            creds = await self.store.durable.load_creds(addr)
            if creds is not None:
                result.records += 1
                result.bytes_stored += len(creds.blob)
        result.store_sessions = len([s async for s in self.store.list_sessions(self.namespace)])

    async def delete(self) -> None:
        """Delete the demo's sessions from the store."""
        for device in self.devices:
            await self.store.session(device.session_id, namespace=self.namespace).delete()


async def run_demo(
    store: AuthStore,
    namespace: str,
    *,
    devices: int,
    messages: int,
    group_messages: int,
    seed: int,
    progress: Progress,
    delete_after: bool,
) -> DemoResult:
    """Run the simulation on an opened store; see the module docstring."""
    result = DemoResult()
    started = time.perf_counter()
    sim = _Sim(store, namespace, result)
    rng = random.Random(seed)  # noqa: S311 - picks chat partners, not secrets

    task = progress.add_task("pairing devices", total=devices)
    for n in range(devices):
        await sim.pair(n)
        progress.advance(task)
    task = progress.add_task("1:1 messages", total=messages)
    for n in range(messages):
        sender, receiver = rng.sample(sim.devices, 2)
        await sim.chat(sender, receiver, f"message {n} from {sender.session_id}")
        progress.advance(task)
    task = progress.add_task("group messages", total=group_messages)
    for n in range(group_messages):
        sender = rng.choice(sim.devices)
        await sim.group_send(sender, f"group message {n} from {sender.session_id}")
        progress.advance(task)

    await sim.measure()
    if delete_after:
        await sim.delete()
    result.wall_seconds = time.perf_counter() - started
    return result
