"""``import-store``: each foreign layout built exactly as its Node package writes it, imported.

baileys-redis-auth (both layouts) and store-core's Redis keys on the test redis-server (redis-py),
mongo-baileys and store-core's MongoDB documents on the test SecantusDB (PyMongo); every test
proves the imported session equal to the original, creds and every key.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import cramjam
import pytest
import redis
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import MongoClient

from baileys_store import AuthStore, StoreConfig
from baileys_store.cli._import_store import import_store_command
from baileys_store.integrations._bufferjson import dumps
from baileys_store.integrations._folder_names import key_filename
from tests._services.mongo import MongoServer
from tests._services.redis import RedisServer

MASTER = "11" * 32  # store-core's MASTER_KEY: 64 hex digits

CREDS: dict[str, Any] = {
    "noiseKey": {"private": b"\x01" * 32, "public": b"\x02" * 32},
    "signedIdentityKey": {"private": b"\x03" * 32, "public": b"\x04" * 32},
    "signedPreKey": {
        "keyPair": {"private": b"\x05" * 32, "public": b"\x06" * 32},
        "signature": b"\x07" * 64,
        "keyId": 1,
    },
    "registrationId": 1234,
    "advSecretKey": base64.b64encode(b"\x08" * 32).decode(),
    "me": {"id": "5511999999999:7@s.whatsapp.net", "name": "Clinic"},
    "nextPreKeyId": 3,
    "firstUnuploadedPreKeyId": 3,
    "registered": True,
    "processedHistoryMessages": [],
}
OBJECT_KEYS: dict[str, dict[str, Any]] = {  # values that are JSON objects
    "pre-key": {
        "1": {"private": b"\x11" * 32, "public": b"\x12" * 32},
        "2": {"private": b"\x13" * 32, "public": b"\x14" * 32},
    },
    "session": {"5511888888888.0": {"_sessions": {"Bf9x": {"registrationId": 7}}, "version": "v1"}},
    "app-state-sync-key": {"AAAAAF/x+w==": {"keyData": "a2V5", "timestamp": "1700000000"}},
    "app-state-sync-version": {
        "regular": {"version": 3, "hash": b"\x20" * 128, "indexValueMap": {}}
    },
    "tctoken": {"5511888888888@s.whatsapp.net": {"token": b"\x21" * 16, "timestamp": "1700000000"}},
}
OTHER_KEYS: dict[str, dict[str, Any]] = {  # Buffers, strings, arrays, dotted field names
    "sender-key": {"120363000000000000@g.us::5511888888888::0": b'{"chain":1}'},
    "sender-key-memory": {"120363000000000000@g.us": {"5511888888888:1@s.whatsapp.net": True}},
    "identity-key": {"5511888888888.0": b"\x05" + b"\x22" * 32},
    "lid-mapping": {"5511888888888": "99999999999", "99999999999_reverse": "5511888888888"},
    "device-list": {"5511888888888": ["0", "1"]},
}
ALL_KEYS = {**OBJECT_KEYS, **OTHER_KEYS}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BAILEYS_STORE_", "STORE_CORE_")):
            monkeypatch.delenv(name)


def cli(*args: str) -> Result:
    return CliRunner().invoke(import_store_command, list(args))


async def _read(url: str, sid: str, ns: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    async with AuthStore(StoreConfig(durable=url, cache=None)) as store:
        session = store.session(sid, namespace=ns)
        ids = await session.key_ids()
        keys = {t: await session.keys.get(t, i) for t, i in ids.items()}
        return await session.load_creds(), keys


def stored(url: str, sid: str, ns: str = "default") -> tuple[Any, dict[str, dict[str, Any]]]:
    return asyncio.run(_read(url, sid, ns))


@pytest.fixture
def r(redis_server: RedisServer) -> Any:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def snapshot(client: Any, pattern: str) -> dict[bytes, bytes]:
    return {k: client.dump(k) for k in client.scan_iter(match=pattern)}


# -- baileys-redis-auth (hbinduni/baileys-redis-auth src/index.ts) ------------------------------


def write_redis_auth(client: Any, prefix: str, layout: str) -> None:
    """useRedisAuthStateWithHSet / useRedisAuthState: JSON.stringify(v, BufferJSON.replacer)."""
    items = {"creds": dumps(CREDS, "node")}
    for key_type, values in ALL_KEYS.items():
        for key_id, value in values.items():
            items[key_filename(key_type, key_id)[: -len(".json")]] = dumps(value, "node")
    if layout == "hset":
        client.hset(f"{prefix}:auth", mapping=items)
    else:
        client.mset({f"{prefix}:{k}": v for k, v in items.items()})


@pytest.mark.parametrize("layout", ["hset", "keys"])
def test_baileys_redis_auth_layouts_import_equal_and_rerun_is_idempotent(
    r: Any, redis_server: RedisServer, tmp_path: Path, layout: str
) -> None:
    prefix = f"bra-{uuid.uuid4().hex[:8]}"
    write_redis_auth(r, prefix, layout)
    before = snapshot(r, f"{prefix}:*")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    args = ["baileys-redis-auth", redis_server.url, "--session", prefix, "--layout", layout]
    result = cli(*args, "--namespace", "ns1", "--store", url)
    assert result.exit_code == 0, result.output
    assert "creds saved" in result.output
    assert stored(url, prefix, "ns1") == (CREDS, ALL_KEYS)
    again = cli(*args, "--namespace", "ns1", "--store", url)
    assert again.exit_code == 0, again.output
    assert "creds unchanged" in again.output
    assert stored(url, prefix, "ns1") == (CREDS, ALL_KEYS)
    assert snapshot(r, f"{prefix}:*") == before  # the source is never written


def test_all_sessions_one_failing_is_reported_and_the_others_imported(
    r: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    good, bad = (f"all-{uuid.uuid4().hex[:8]}-{n}" for n in ("good", "bad"))
    write_redis_auth(r, good, "hset")
    r.hset(f"{bad}:auth", mapping={"creds": dumps(CREDS, "node"), "pre-key-1": "{not json"})
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = cli("baileys-redis-auth", redis_server.url, "--all", "--store", url)
    assert result.exit_code == 1
    assert f"{bad}: FAILED" in result.output
    assert stored(url, good) == (CREDS, ALL_KEYS)
    assert stored(url, bad) == (None, {})  # read whole before writing: nothing of it


def test_bad_url_and_missing_session_are_one_line_and_leave_no_destination(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    dest = tmp_path / "d.db"
    for args in (
        ["baileys-redis-auth", "http://nowhere", "--all"],
        ["baileys-redis-auth", "redis://127.0.0.1:1/0", "--all"],
        ["mongo-baileys", "mongodb://127.0.0.1:1", "--all"],
    ):
        result = cli(*args, "--store", f"sqlite:///{dest}")
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not dest.exists()
    result = cli(
        "baileys-redis-auth", redis_server.url, "--session", "nope", "--store", f"sqlite:///{dest}"
    )
    assert result.exit_code == 1
    assert "nope: FAILED" in result.output
    assert cli("store-core", redis_server.url, "--store", f"sqlite:///{dest}").exit_code == 2


# -- store-core (luoarch/baileys-store-core src/crypto/*.ts, src/redis|mongodb/store.ts) --------


def _node_json(value: Any) -> Any:
    """What ``JSON.stringify`` hands the replacer: a Buffer already as ``{type, data: [..]}``."""
    if isinstance(value, bytes):
        return {"type": "Buffer", "data": list(value)}
    if isinstance(value, dict):
        return {k: _node_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_node_json(v) for v in value]
    return value


def encode(value: Any, compression: str) -> bytes:
    text = json.dumps(_node_json(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = text.encode()
    if compression == "snappy":
        return bytes(cramjam.snappy.compress_raw(data))
    return gzip.compress(data, compresslevel=6) if compression == "gzip" else data


def seal(plain: bytes, encrypted: bool) -> tuple[bytes, bytes]:
    if not encrypted:
        return b"", plain
    nonce = os.urandom(12)
    return nonce, AESGCM(bytes.fromhex(MASTER)).encrypt(nonce, plain, None)


def envelope(value: Any, compression: str, encrypted: bool) -> str:
    nonce, sealed = seal(encode(value, compression), encrypted)
    key_id = hashlib.sha256(bytes.fromhex(MASTER)).hexdigest()[:16] if encrypted else "none"
    return json.dumps(
        {
            "ciphertext": base64.b64encode(sealed).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "keyId": key_id,
            "schemaVersion": 1,
            "timestamp": "2026-01-01T00:00:00.000Z",
        }
    )


@pytest.mark.parametrize(
    ("compression", "encrypted"), [("snappy", True), ("gzip", False), ("none", False)]
)
def test_store_core_redis_imports_equal(
    r: Any, redis_server: RedisServer, tmp_path: Path, compression: str, encrypted: bool
) -> None:
    sid = f"sc-{uuid.uuid4().hex[:8]}"
    base = f"baileys:auth:{sid}:"
    r.setex(
        base + "creds",
        86400,
        envelope(
            {"creds": CREDS, "version": 2, "updatedAt": "2026-01-01T00:00:00.000Z"},
            compression,
            encrypted,
        ),
    )
    r.setex(
        base + "keys",
        86400,
        envelope(
            {"keys": ALL_KEYS, "version": 2, "updatedAt": "2026-01-01T00:00:00.000Z"},
            compression,
            encrypted,
        ),
    )
    r.setex(
        base + "meta", 86400, json.dumps({"version": 2, "updatedAt": "2026-01-01T00:00:00.000Z"})
    )
    url = f"sqlite:///{tmp_path / 'd.db'}"
    key = ["--master-key", MASTER] if encrypted else []
    result = cli("store-core", redis_server.url, "--session", sid, *key, "--store", url)
    assert result.exit_code == 0, result.output
    assert stored(url, sid) == (CREDS, ALL_KEYS)
    if encrypted:
        wrong = cli(
            "store-core",
            redis_server.url,
            "--session",
            sid,
            "--master-key",
            "22" * 32,
            "--store",
            url,
        )
        assert wrong.exit_code == 1
        assert "key id" in wrong.output


# -- MongoDB sources (kept small: SecantusDB is slow) --------------------------------------------


@pytest.fixture
def mongo(mongo_server: MongoServer) -> Any:
    db = f"imp_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_server.uri)
    yield client, db, mongo_server.uri.rstrip("/") + "/" + db
    client.drop_database(db)
    client.close()


def test_mongo_baileys_imports_what_it_stores(mongo: Any, tmp_path: Path) -> None:
    client, db, src = mongo
    coll = client[db]["clinic1"]
    coll.update_one({"_id": "auth_creds"}, {"$set": {"creds": CREDS}}, upsert=True)
    for key_type, values in {
        **OBJECT_KEYS,
        "sender-key-memory": OTHER_KEYS["sender-key-memory"],
    }.items():
        for key_id, value in values.items():
            coll.update_one({"_id": f"{key_type}-{key_id}"}, {"$set": value}, upsert=True)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = cli("mongo-baileys", src, "--all", "--store", url)
    assert result.exit_code == 0, result.output
    # $set reads "a.b" as a path: the package itself reads sender-key-memory back nested.
    memory = {"120363000000000000@g.us": {"5511888888888:1@s": {"whatsapp": {"net": True}}}}
    assert stored(url, "clinic1") == (CREDS, {**OBJECT_KEYS, "sender-key-memory": memory})


def test_store_core_mongo_imports_equal(mongo: Any, tmp_path: Path) -> None:
    client, db, src = mongo

    def field(value: Any) -> str:
        nonce, sealed = seal(encode(value, "snappy"), True)
        return base64.b64encode(nonce + sealed).decode()

    client[db]["sessions"].insert_one(
        {
            "_id": "tenant:1",
            "version": 3,
            "creds": field(CREDS),
            "keys": {t: field(v) for t, v in ALL_KEYS.items()},
            "fencingToken": 0,
        }
    )
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = cli(
        "store-core", src + "?collection=sessions", "--all", "--master-key", MASTER, "--store", url
    )
    assert result.exit_code == 0, result.output
    assert stored(url, "tenant:1") == (CREDS, ALL_KEYS)
