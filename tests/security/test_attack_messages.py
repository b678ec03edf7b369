"""Every attack of this package fails fast, and no message or log record carries a secret.

One encrypted store over SQLite with a Redis cache is attacked the ways the other modules of
``tests/security`` do one by one (forged plaintext records, moved blobs, a decompression bomb, a
wrong key under a known id, rotation over tampered data, a cache prefix collision, bad URLs with
passwords); every error is collected with every log record of the run and searched for each
textual form of the master keys, the stored values and the passwords. Each failing call must
end within 1 s (or the configured ``op_timeout``).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import KeyWrite, SessionAddr
from baileys_store.codec import key_aad
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.security._forge import envelope, plaintext_creds, plaintext_key, zstd_bomb

PASSWORD = "pw-" + secrets.token_hex(12)
BAD_URLS = [
    f"postgresql://app:{PASSWORD}@127.0.0.1:1/x",
    f"redis://:{PASSWORD}@127.0.0.1:1/0",
    f"mongodb://u:{PASSWORD}@127.0.0.1:1/db",
    "sqlite:////proc/baileys-store-x.db",
]


async def open_it(config: StoreConfig) -> None:
    """Open a store that should be refused; closed again if it opens after all."""
    store = AuthStore(config)
    await store.open()
    await store.close()


def forms(raw: bytes) -> list[str]:
    """Every textual form a secret could leak in."""
    return [
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1][:40],
    ]


class Attacks:
    """Runs failing calls, times them, and keeps their messages."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def expect(
        self, kind: type[errors.StoreError], call: Callable[[], Awaitable[Any]], limit: float = 1.0
    ) -> errors.StoreError:
        start = time.monotonic()
        with pytest.raises(kind) as info:
            await call()
        took = time.monotonic() - start
        assert took < limit, f"{kind.__name__} took {took:.2f}s"
        self.texts += [str(info.value), repr(info.value)]
        return info.value


async def test_attacks_fail_fast_and_leak_nothing(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    private, record = secrets.token_bytes(32), secrets.token_bytes(48)
    cache = with_query(redis_server.url, prefix=unique_prefix())
    base: dict[str, Any] = {
        "durable": f"sqlite:///{tmp_path / 's.db'}",
        "cache": cache,
        "encryption": "aes-256-gcm",
        "master_keys": {1: k1.hex()},
        "op_timeout": 1.0,
    }
    attacks = Attacks()
    addr = SessionAddr("tenant", "5511")

    store = AuthStore(StoreConfig(**base))
    await store.open()
    try:
        sess = store.session("5511", namespace="tenant")
        await sess.save_creds(
            {
                "noiseKey": {"public": secrets.token_bytes(32), "private": private},
                "registrationId": 7,
            }
        )
        await sess.keys.set({"session": {"1.0": record}, "pre-key": {"1": {"private": private}}})
        # Forged plaintext records, a moved blob and a bomb, straight into the durable tier (an
        # encrypted store refuses the bomb before decompressing it: it is a plaintext record).
        durable = store.durable
        aad_bomb = key_aad(*addr, "session", "bomb")
        await durable.write_keys(
            addr,
            [
                KeyWrite("session", "forged", plaintext_key(addr, "session", "forged", private)),
                KeyWrite(
                    "session", "moved", (await durable.get_keys(addr, "session", ["1.0"]))["1.0"]
                ),
                KeyWrite("session", "bomb", envelope(zstd_bomb(1 << 30), aad_bomb, 2)),
            ],
        )
        for key_id, kind in (
            ("forged", errors.PlaintextRecordError),
            ("moved", errors.DecryptError),
            ("bomb", errors.PlaintextRecordError),
        ):
            await attacks.expect(kind, partial(sess.keys.get, "session", [key_id]))
        # Plaintext creds forged by a process without the key.
        await durable.save_creds(addr, plaintext_creds(addr, {"registrationId": 1, "me": private}))
        fresh = AuthStore(StoreConfig(**{**base, "lease": "off", "cache": None}))
        await fresh.open()
        try:
            await attacks.expect(
                errors.DecryptError, lambda: fresh.session("5511", namespace="tenant").load_creds()
            )
            report = await fresh.rotate_keys(verify=True)
            assert report.failed >= 3
        finally:
            await fresh.close()
    finally:
        await store.close()

    # Reopened by a process with a different key under the same id, or without encryption.
    for changes in ({"master_keys": {1: k2.hex()}}, {"encryption": "none", "master_keys": {}}):
        await attacks.expect(
            errors.ConfigError, partial(open_it, StoreConfig(**{**base, **changes}))
        )
    # A cache prefix that is a Redis-only durable store's (the cache adds "c" to its prefix).
    prefix = unique_prefix()
    durable_store = AuthStore(
        StoreConfig(durable=with_query(redis_server.url, prefix=prefix + "c"), cache=None)
    )
    await durable_store.open()
    try:
        clash = {
            **base,
            "durable": f"sqlite:///{tmp_path / 'other.db'}",
            "cache": with_query(redis_server.url, prefix=prefix),
        }
        await attacks.expect(errors.ConfigError, lambda: open_it(StoreConfig(**clash)))
    finally:
        await durable_store.close()
    # Unreachable servers with a password in the URL, an unopenable path.
    for url in BAD_URLS:
        bad = StoreConfig(durable=url, cache=None, op_timeout=1.0)
        # op_timeout bounds each call; the open makes one, plus the client's own set-up.
        await attacks.expect(errors.StoreError, partial(open_it, bad), limit=2.0)

    everything = "\n".join(
        attacks.texts
        + [r.getMessage() for r in caplog.records]
        + [repr(r.__dict__) for r in caplog.records]
    )
    assert len(attacks.texts) >= 2 * 10
    # (Not ``assert form not in everything``: pytest's explanation of a miss in a long text
    # takes minutes.)
    secrets_seen = [
        form for raw in (k1, k2, private, record) for form in forms(raw) if form in everything
    ]
    assert secrets_seen == []
    assert (PASSWORD in everything) is False
