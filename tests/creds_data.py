"""Creds test data shared by the contract and unit suites."""

from __future__ import annotations

import base64
import os
from typing import Any


def key_pair() -> dict[str, bytes]:
    """A random ``{public, private}`` pair of 32-byte keys."""
    return {"public": os.urandom(32), "private": os.urandom(32)}


def node_creds(**extra: Any) -> dict[str, Any]:
    """Creds shaped like Baileys 7's (camelCase, Buffers as bytes), with every known field."""
    creds: dict[str, Any] = {
        "noiseKey": key_pair(),
        "pairingEphemeralKeyPair": key_pair(),
        "signedIdentityKey": key_pair(),
        "signedPreKey": {"keyPair": key_pair(), "signature": os.urandom(64), "keyId": 1},
        "registrationId": 16383,
        "advSecretKey": base64.b64encode(os.urandom(32)).decode(),
        "me": {"id": "5511999887766:12@s.whatsapp.net", "name": "Clinic", "lid": "1234:12@lid"},
        "account": {"details": base64.b64encode(os.urandom(40)).decode()},
        "signalIdentities": [
            {
                "identifier": {"name": "1234:12@lid", "deviceId": 0},
                "identifierKey": b"\x05" + os.urandom(32),
            }
        ],
        "myAppStateKeyId": "AAAAAB/+cw==",
        "firstUnuploadedPreKeyId": 813,
        "nextPreKeyId": 813,
        "lastAccountSyncTimestamp": 1712345678,
        "platform": "android",
        "processedHistoryMessages": [{"key": {"id": "ABC"}, "messageTimestamp": 1712345678}],
        "accountSyncCounter": 3,
        "accountSettings": {"unarchiveChats": False},
        "registered": True,
        "pairingCode": None,
        "lastPropHash": "3R5kGz",
        "routingInfo": os.urandom(12),
        "additionalData": None,
    }
    creds.update(extra)
    return creds
