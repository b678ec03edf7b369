"""The timed operations. Each one prepares its values first, so only store work is timed."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._workload import CREDS_BURST, OpContext, me_sender_key

Run = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One operation type: its name in reports, what it does, and its key-ops per call."""

    name: str
    doc: str
    prepare: Callable[[OpContext], Run]


def _get(ctx: OpContext) -> Run:
    peer = ctx.values.rng.choice(ctx.account.peers)

    async def run() -> None:
        await ctx.keys.get("session", [peer])

    return run


def _set(ctx: OpContext) -> Run:
    data = {"session": {ctx.values.rng.choice(ctx.account.peers): ctx.values.session()}}

    async def run() -> None:
        await ctx.keys.set(data)

    return run


def _batch_set(ctx: OpContext) -> Run:
    data = {"pre-key": {i: ctx.values.pre_key() for i in ctx.account.prekey_window}}

    async def run() -> None:
        await ctx.keys.set(data)

    return run


def _batch_get(ctx: OpContext) -> Run:
    ids = ctx.account.prekey_window

    async def run() -> None:
        found = await ctx.keys.get("pre-key", ids)
        if len(found) != len(ids):
            raise RuntimeError(f"batch get returned {len(found)} of {len(ids)} pre-keys")

    return run


def _topup(ctx: OpContext) -> Run:
    data = {"pre-key": {i: ctx.values.pre_key() for i in ctx.account.topup_window}}

    async def run() -> None:
        await ctx.keys.set(data)

    return run


def _message(ctx: OpContext) -> Run:
    peer = ctx.values.rng.choice(ctx.account.peers)
    ours, theirs = ctx.values.session(), ctx.values.session()

    async def run() -> None:
        # Sender encrypts (load + store its session), then the receiver decrypts.
        await ctx.keys.get("session", [peer])
        await ctx.keys.set({"session": {peer: ours}})
        await ctx.peer_keys.get("session", [ctx.peer_id])
        await ctx.peer_keys.set({"session": {ctx.peer_id: theirs}})

    return run


def _group_send(ctx: OpContext) -> Run:
    group = ctx.values.rng.choice(ctx.account.groups)
    me = me_sender_key(group)
    sender_key = ctx.values.sender_key()
    memory = {f"{d}@s.whatsapp.net": True for d in group.devices}

    async def run() -> None:
        await ctx.keys.get("sender-key", [me])
        await ctx.keys.get("sender-key-memory", [group.jid])
        await ctx.keys.get("session", group.devices)  # assert sessions of every device
        await ctx.keys.set({"sender-key": {me: sender_key}})
        await ctx.keys.set({"sender-key-memory": {group.jid: memory}})

    return run


def _creds_burst(ctx: OpContext) -> Run:
    creds = ctx.account.creds
    counter = itertools.count(int(creds.get("account_sync_counter") or 0) + 1)

    async def run() -> None:
        for _ in range(CREDS_BURST):
            creds["account_sync_counter"] = next(counter)
            await ctx.save_creds(creds)

    return run


def _app_state(ctx: OpContext) -> Run:
    name = ctx.values.rng.choice(ctx.account.collections)
    value: dict[str, Any] = ctx.values.app_state_version()

    async def run() -> None:
        await ctx.keys.get("app-state-sync-version", [name])
        await ctx.keys.set({"app-state-sync-version": {name: value}})

    return run


OPS: tuple[OpSpec, ...] = (
    OpSpec("get", "single-key get (`session`)", _get),
    OpSpec("set", "single-key set (`session`, 1-2 KB)", _set),
    OpSpec("batch_set_812", "812 `pre-key` ids in one set (pairing)", _batch_set),
    OpSpec("batch_get_812", "812 `pre-key` ids in one get", _batch_get),
    OpSpec("prekey_topup_5", "5 `pre-key` ids in one set (top-up)", _topup),
    OpSpec("msg_1to1", "1:1 message: `session` get + set on both sides", _message),
    OpSpec(
        "group_send", "group send: sender-key + memory + bulk `session` get, 2 sets", _group_send
    ),
    OpSpec("creds_burst", f"burst of {CREDS_BURST} whole-creds saves", _creds_burst),
    OpSpec("app_state_sync", "`app-state-sync-version` get + set (50-200 KB)", _app_state),
)
OP_NAMES: tuple[str, ...] = tuple(op.name for op in OPS)
