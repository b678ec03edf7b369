"""The workload model: what a WhatsApp client asks of its key store, with realistic values.

Facts from BAILEYS-DATA.md: a 1:1 message reads and writes one ``session`` record on each side;
a group send reads the ``sender-key`` and ``sender-key-memory`` of the group and the ``session``
of every participant device, then writes the first two; pairing sets 812 ``pre-key`` ids in one
call and top-ups add 5; ``creds`` are saved whole, in bursts; ``app-state-sync-version`` values
are 50-200 KB. Everything is drawn from one seeded RNG so two runs do the same work.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
from pyaileys.auth.utils import init_auth_creds

PREKEY_BATCH = 812
TOPUP = 5
CREDS_BURST = 10


class KeyStoreLike(Protocol):
    """The Baileys key-store contract (``get`` / ``set``) as every store under test offers it."""

    async def get(self, key_type: str, ids: list[str], /) -> Mapping[str, Any]:
        """Values of the ids found."""

    async def set(self, data: Any, /) -> None:
        """Upsert (or delete with ``None``) ``{type: {id: value}}``."""


@dataclass(frozen=True, slots=True)
class Profile:
    """How many keys of each type one account holds."""

    pre_keys: int
    sessions: int
    sender_keys: int
    groups: int
    group_devices: int
    app_state_versions: int
    app_state_keys: int


# The Node anchor's "realistic" account (3,248 pre-keys, 500 sessions, 200 sender keys).
HEAVY = Profile(3248, 500, 200, 40, 64, 5, 6)
QUICK = Profile(PREKEY_BATCH, 64, 16, 4, 16, 1, 2)
APP_STATE_COLLECTIONS = (
    "critical_block",
    "critical_unblock_low",
    "regular_high",
    "regular_low",
    "regular",
)


class Values:
    """Value generators with the shapes and sizes pyaileys stores."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def session(self) -> bytes:
        """A serialized RecordStructure: 1-2 KB of high-entropy bytes."""
        return self.rng.randbytes(self.rng.randint(1000, 2000))

    def pre_key(self) -> dict[str, bytes]:
        """A one-time pre-key pair."""
        return {"public": self.rng.randbytes(32), "private": self.rng.randbytes(32)}

    def sender_key(self) -> bytes:
        """A SenderKeyRecordStructure (a few states with chain keys and signing keys)."""
        return self.rng.randbytes(self.rng.randint(300, 2000))

    def identity_key(self) -> bytes:
        """A Signal identity public key (0x05 + 32 bytes)."""
        return b"\x05" + self.rng.randbytes(32)

    def app_state_key(self) -> bytes:
        """An AppStateSyncKeyData protobuf."""
        return self.rng.randbytes(self.rng.randint(80, 120))

    def app_state_version(self, size: int | None = None) -> dict[str, Any]:
        """``{version, hash, indexValueMap}`` of about ``size`` bytes (default 50-200 KB)."""
        size = size or self.rng.randint(50_000, 200_000)
        entries = max(1, size // 80)  # 44-char base64 index + 32-byte valueMac + framing
        index = {
            base64.b64encode(self.rng.randbytes(32)).decode(): self.rng.randbytes(32)
            for _ in range(entries)
        }
        return {
            "version": self.rng.randint(1, 10_000),
            "hash": self.rng.randbytes(128),
            "indexValueMap": index,
        }

    def creds(self) -> dict[str, Any]:
        """A real pyaileys creds object as a dict (snake_case, as pyaileys keeps it)."""
        creds: dict[str, Any] = dataclasses.asdict(init_auth_creds())
        creds["processed_history_messages"] = [
            {"key": {"id": f"3EB0{self.rng.getrandbits(64):016X}"}, "messageTimestamp": i}
            for i in range(self.rng.randint(5, 40))
        ]
        return creds


def resident_profile(rng: random.Random) -> Profile:
    """A typical paired account: ~812 pre-keys, tens of sessions (long-tailed), a few groups."""
    sessions = max(1, min(500, round(rng.lognormvariate(math.log(30), 1.0))))
    sender_keys = max(1, min(200, round(rng.lognormvariate(math.log(8), 1.0))))
    return Profile(
        pre_keys=rng.randint(700, 900),
        sessions=sessions,
        sender_keys=sender_keys,
        groups=max(1, sender_keys // 4),
        group_devices=min(sessions, 32),
        app_state_versions=rng.randint(1, len(APP_STATE_COLLECTIONS)),
        app_state_keys=rng.randint(1, 6),
    )


def payload_bytes(calls: list[dict[str, Any]], creds: Mapping[str, Any]) -> int:
    """Raw size of an account: msgpack of every value plus its type and id, plus the creds."""
    total = len(msgpack.packb(dict(creds), use_bin_type=True))
    for call in calls:
        for key_type, items in call.items():
            for key_id, value in items.items():
                total += len(key_type) + len(key_id) + len(msgpack.packb(value, use_bin_type=True))
    return total


def device_ids(rng: random.Random, count: int) -> list[str]:
    """Signal addresses of peer devices: ``{user}.{device}``, a third of them LID users."""
    out: list[str] = []
    while len(out) < count:
        user = f"55{rng.randint(10**10, 10**11 - 1)}"
        if rng.random() < 1 / 3:
            user = f"{rng.randint(10**13, 10**14 - 1)}_1"
        devices = min(rng.choice((1, 1, 2, 3)), count - len(out))
        out.extend(f"{user}.{device}" for device in range(devices))
    return out


@dataclass(slots=True)
class Group:
    """A group: its JID and the participant devices a send must encrypt for."""

    jid: str
    devices: list[str]


@dataclass(slots=True)
class Account:
    """The ids one populated account holds; ops pick from them."""

    peers: list[str]
    groups: list[Group]
    prekey_window: list[str]
    topup_window: list[str]
    collections: list[str]
    creds: dict[str, Any] = field(default_factory=dict)


def account_writes(values: Values, profile: Profile) -> tuple[Account, list[dict[str, Any]]]:
    """The ``set`` calls that populate one account, and the ids they create.

    Large types are split into calls of at most 812 ids, as a client writes them.
    """
    rng = values.rng
    peers = device_ids(rng, profile.sessions)
    groups = [
        Group(
            f"120363{rng.randint(10**11, 10**12 - 1)}@g.us",
            rng.sample(peers, min(profile.group_devices, len(peers))),
        )
        for _ in range(profile.groups)
    ]
    prekey_ids = [str(i) for i in range(1, profile.pre_keys + 1)]
    calls: list[dict[str, Any]] = []
    for start in range(0, len(prekey_ids), PREKEY_BATCH):
        chunk = prekey_ids[start : start + PREKEY_BATCH]
        calls.append({"pre-key": {i: values.pre_key() for i in chunk}})
    for start in range(0, len(peers), 100):
        chunk = peers[start : start + 100]
        calls.append(
            {
                "session": {p: values.session() for p in chunk},
                "identity-key": {p: values.identity_key() for p in chunk},
            }
        )
    sender_keys: dict[str, bytes] = {}
    for n in range(profile.sender_keys):
        group = groups[n % len(groups)] if groups else Group("0@g.us", peers)
        author = group.devices[n % len(group.devices)] if group.devices else "0.0"
        sender_keys[f"{group.jid}::{author.replace('.', '::')}"] = values.sender_key()
    calls.append(
        {
            "sender-key": sender_keys,
            "sender-key-memory": {
                g.jid: {f"{d}@s.whatsapp.net": True for d in g.devices} for g in groups
            },
            "app-state-sync-key": {
                base64.b64encode(rng.randbytes(6)).decode(): values.app_state_key()
                for _ in range(profile.app_state_keys)
            },
        }
    )
    collections = list(APP_STATE_COLLECTIONS[: profile.app_state_versions])
    # One large collection (50-200 KB), the others a few KB.
    calls.extend(
        {
            "app-state-sync-version": {
                c: values.app_state_version(None if n == 0 else rng.randint(2_000, 20_000))
            }
        }
        for n, c in enumerate(collections)
    )
    account = Account(
        peers,
        groups,
        prekey_ids[:PREKEY_BATCH],
        [str(profile.pre_keys + i) for i in range(1, TOPUP + 1)],
        collections,
        values.creds(),
    )
    return account, calls


def me_sender_key(group: Group) -> str:
    """The sender-key id of our own device in ``group``."""
    return f"{group.jid}::5511900000000::0"


@dataclass(slots=True)
class OpContext:
    """What an operation needs: the account's key store, its peer's, a creds saver, values."""

    keys: KeyStoreLike
    peer_keys: KeyStoreLike
    account: Account
    peer_id: str  # the account's address as the peer stores it
    values: Values
    save_creds: Callable[[dict[str, Any]], Awaitable[None]]


Op = Callable[[OpContext], Awaitable[None]]
