"""No key material, creds value or master key may reach an exception message or a log record."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path

import pytest

from baileys_store import StoreConfig, errors, open_store
from baileys_store._model import SessionAddr
from baileys_store.backends.sqlite import SQLiteDurable, sqlite_path
from baileys_store.codec import record_aad


def _forms(raw: bytes) -> list[str]:
    """Every textual form a secret could leak in."""
    return [
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1][:40],
    ]


async def test_errors_and_logs_carry_no_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    master = secrets.token_bytes(32)
    other = secrets.token_bytes(32)
    private = secrets.token_bytes(32)
    session_record = secrets.token_bytes(64)
    url = f"sqlite:///{tmp_path / 's.db'}"
    cfg = StoreConfig(durable=url, encryption="aes-256-gcm", master_keys={1: master.hex()})
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)

    async with open_store(cfg) as store:
        sess = store.session("5511", namespace="clinic-1")
        creds = {
            "noiseKey": {"public": secrets.token_bytes(32), "private": private},
            "registrationId": 42,
        }
        await sess.save_creds(creds)
        await sess.keys.set({"session": {"1.0": session_record}})
        # Invalid input carrying secrets: the message names the field, not the value.
        bad = {"noiseKey": {"public": private.hex(), "private": private}}
        with pytest.raises(errors.InvalidInputError) as exc_info:
            await sess.save_creds(bad)
        texts.append(str(exc_info.value))
        with pytest.raises(errors.ConflictError) as conflict:
            await sess.save_creds(creds, expected_version=7)
        texts.append(str(conflict.value))
        with pytest.raises(errors.InvalidInputError) as unpackable:
            await sess.keys.set({"session": {"x": {private: object()}}})
        texts.append(str(unpackable.value))

    # Same data opened with the wrong key: refused at open (the key's fingerprint differs),
    # naming the key id only.
    wrong = StoreConfig(durable=url, encryption="aes-256-gcm", master_keys={1: other.hex()})
    with pytest.raises(errors.ConfigError, match="master key 1 does not match") as mismatch:
        async with open_store(wrong):
            pass
    texts.append(str(mismatch.value))
    # Read with the wrong key: a decrypt error, whose text holds no key either.
    async with open_store(cfg) as store:
        addr = SessionAddr("clinic-1", "5511")
        blob = (await store.durable.get_keys(addr, "session", ["1.0"]))["1.0"]
    wrong_codec = wrong.codec()
    with pytest.raises(errors.DecryptError) as dec:
        wrong_codec.decode(blob, record_aad("k", "clinic-1", "5511", "session", "1.0"))
    texts.append(str(dec.value))

    # A malformed master key (right length, not valid base64/hex) is refused without echoing it.
    not_a_key = "!" * 43 + "="
    with pytest.raises(errors.ConfigError) as cfg_err:
        StoreConfig(encryption="aes-256-gcm", master_keys={1: not_a_key})
    texts.append(str(cfg_err.value))
    texts.append(repr(cfg))
    texts.extend(r.getMessage() + repr(r.__dict__) for r in caplog.records)

    # The raw blobs on disk are encrypted: no plaintext key material.
    durable = SQLiteDurable(sqlite_path(url))
    await durable.open()
    try:
        stored = await durable.get_keys(SessionAddr("clinic-1", "5511"), "session", ["1.0"])
    finally:
        await durable.close()
    assert session_record not in stored["1.0"]

    everything = "\n".join(texts)
    assert len(texts) >= 6
    for raw in (master, other, private, session_record):
        for form in _forms(raw):
            assert form not in everything
    assert not_a_key not in everything
