"""The whole client flow at DEBUG: no key material, creds or master key escapes anywhere.

Devices pair, exchange 1:1 and group messages through pyaileys' real Signal stack on a hybrid
store (Redis cache over SQLite, encrypted, write-behind through a durable outage), with failures
provoked on purpose. Then every secret the store holds — the master key, every device's private
keys, every Signal session record — is searched for in every form (hex, base64, repr) in the
``baileys_store`` log records (message and structured fields), the error messages raised, and the
Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.progress import Progress

from baileys_store import AuthStore, StoreConfig, errors
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.cli._demo_run import run_demo
from baileys_store.observability import StoreMetrics
from tests._services.redis import RedisServer, unique_prefix, with_query
from tests.integration._flaky import FlakySQLite

NS = "secrets"


def forms(raw: bytes) -> list[str]:
    return [
        raw.hex(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1][:40],
    ]


def secret_bytes(value: Any, out: list[bytes]) -> None:
    """Every bytes value of 16+ bytes inside creds (private keys, secrets, signatures)."""
    if isinstance(value, (bytes, bytearray)) and len(value) >= 16:
        out.append(bytes(value))
    elif isinstance(value, dict):
        for v in value.values():
            secret_bytes(v, out)
    elif isinstance(value, list):
        for v in value:
            secret_bytes(v, out)


async def test_full_flow_leaks_nothing(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    master = secrets.token_bytes(32)
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    config = StoreConfig(
        durable=f"sqlite:///{tmp_path / 'e2e.db'}",
        cache=cache,
        encryption="aes-256-gcm",
        master_keys={1: master.hex()},
        outbox_worker=False,
        breaker_min_calls=2,
        breaker_window=1.0,
        breaker_reset_timeout=0.2,
    )
    registry = CollectorRegistry()
    durable = FlakySQLite(tmp_path / "e2e.db")
    store = AuthStore(
        config, durable=durable, cache=make_cache(config), metrics=StoreMetrics(registry)
    )
    errors_seen: list[str] = []
    async with store:
        with Progress(disable=True) as progress:
            result = await run_demo(
                store,
                NS,
                devices=3,
                messages=12,
                group_messages=3,
                seed=7,
                progress=progress,
                delete_after=False,
            )
        assert result.failures == []
        device = store.session("device-0", namespace=NS)
        # A durable outage: writes are buffered, reads of misses fail, the breaker opens (logged).
        await asyncio.sleep(1.1)  # the demo's calls leave the breaker's window
        durable.fail_with = errors.UnavailableError("durable down")
        await device.keys.set({"session": {"zz.0": b"buffered"}})
        for n in range(3):  # enough failures to open the durable breaker (logged)
            with pytest.raises(errors.UnavailableError) as outage:
                await device.keys.get("session", [f"not-cached-{n}.0"])
            errors_seen.append(str(outage.value))
        durable.fail_with = None
        await asyncio.sleep(0.3)  # the breaker lets a trial through
        await store.drain_outbox()
        with pytest.raises(errors.ConflictError) as conflict:
            await device.save_creds(await device.load_creds(), expected_version=999)
        errors_seen.append(str(conflict.value))
        # Collect what must never leak: private key material of every device and their sessions.
        leaks: list[bytes] = [master]
        for n in range(3):
            creds = await store.session(f"device-{n}", namespace=NS).load_creds()
            secret_bytes(creds, leaks)
        addr = SessionAddr(NS, "device-0")
        records = await store.durable.get_keys(addr, "session", [f"{u}.0" for u in range(1, 5)])
        for sid in ("device-1", "device-2"):
            got = await store.session(sid, namespace=NS).keys.get(
                "session", [f"{u}.0" for u in range(1, 5)]
            )
            leaks += [v for v in got.values() if isinstance(v, bytes)]
        leaks += list(records.values())
    wrong = StoreConfig(
        durable=config.durable,
        cache=None,
        encryption="aes-256-gcm",
        master_keys={1: secrets.token_hex(32)},
    )
    with pytest.raises(errors.ConfigError, match="master key 1 does not match") as bad_key:
        async with AuthStore(wrong):  # the key fingerprint recorded at first open differs
            pass
    errors_seen.append(str(bad_key.value))

    ours = [r for r in caplog.records if r.name.startswith("baileys_store")]
    texts = [r.getMessage() for r in ours] + [repr(r.__dict__) for r in ours] + errors_seen
    texts.append(generate_latest(registry).decode())
    assert len(leaks) > 10
    assert any("breaker" in r.getMessage() for r in ours)  # real records were searched
    for secret in leaks:
        for form in forms(secret):
            assert all(form not in text for text in texts), "a secret reached logs/errors/metrics"
