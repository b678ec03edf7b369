"""Online master-key rotation: reads work before, during and after; then the old key can go."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from click.testing import CliRunner

from baileys_store import AuthStore, StoreConfig
from baileys_store._model import SessionAddr
from baileys_store.cli import main
from tests._services.redis import RedisServer, unique_prefix, with_query

K1, K2 = secrets.token_hex(32), secrets.token_hex(32)


def config(db: Path, keys: dict[int, str], **kw: object) -> StoreConfig:
    base: dict[str, object] = {"cache": None, **kw}
    return StoreConfig(
        durable=f"sqlite:///{db}", encryption="aes-256-gcm", master_keys=keys, **base
    )


async def key_ids(store: AuthStore, sid: str) -> set[int]:
    addr = SessionAddr("default", sid)
    blobs = await store.durable.get_keys(addr, "pre-key", [str(n) for n in range(300)])
    creds = await store.durable.load_creds(addr)
    assert creds is not None
    return {store.codec.key_id_of(b) for b in [*blobs.values(), creds.blob]}


async def test_rotation_is_online_and_resumable(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with AuthStore(config(db, {1: K1})) as old:
        for sid in ("a", "b"):
            sess = old.session(sid)
            await sess.save_creds({"registrationId": 7})
            await sess.keys.set({"pre-key": {str(n): {"n": n} for n in range(300)}})
    async with AuthStore(config(db, {1: K1, 2: K2})) as store:
        assert await key_ids(store, "a") == {1}
        keys = store.session("a").keys
        stop = asyncio.Event()

        async def live_traffic() -> int:  # the application keeps reading and writing
            n = 0
            while not stop.is_set():
                assert (await keys.get("pre-key", ["5"]))["5"] == {"n": 5}
                await keys.set({"session": {"x.0": str(n).encode()}})
                n += 1
                await asyncio.sleep(0)
            return n

        traffic = asyncio.create_task(live_traffic())
        report = await store.rotate_keys()
        stop.set()
        assert await traffic > 0
        assert (report.sessions, report.in_use) == (2, 0)
        assert report.rewritten >= 602  # 2 x (300 pre-keys + creds); live writes use key 2
        assert await key_ids(store, "a") == {2}
        again = await store.rotate_keys()
        assert (again.rewritten, again.current >= 602) == (0, True)
    async with AuthStore(config(db, {2: K2})) as only_new:  # the old key is gone
        assert await only_new.session("b").load_creds() == {"registrationId": 7}
        assert (await only_new.session("b").keys.get("pre-key", ["299"]))["299"] == {"n": 299}


async def test_rotation_skips_sessions_leased_elsewhere(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    db = tmp_path / "l.db"
    cache = with_query(redis_server.url, prefix=unique_prefix(), ttl="600")
    async with AuthStore(config(db, {1: K1}, cache=cache)) as app:
        await app.session("live").save_creds({"registrationId": 1})
        async with AuthStore(config(db, {1: K1, 2: K2}, cache=cache)) as admin:
            report = await admin.rotate_keys()
        assert (report.sessions, report.in_use, report.rewritten) == (1, 1, 0)


async def test_rotation_on_the_redis_only_tier(redis_server: RedisServer) -> None:
    url = with_query(redis_server.url, prefix=unique_prefix())

    def cfg(keys: dict[int, str]) -> StoreConfig:
        return StoreConfig(durable=url, cache=None, encryption="aes-256-gcm", master_keys=keys)

    async with AuthStore(cfg({1: K1})) as store:
        await store.session("r").keys.set({"pre-key": {str(n): b"p" for n in range(50)}})
    async with AuthStore(cfg({1: K1, 2: K2})) as store:
        report = await store.rotate_keys()
        assert (report.sessions, report.rewritten) == (1, 50)
    async with AuthStore(cfg({2: K2})) as store:
        assert len(await store.session("r").keys.get("pre-key", [str(n) for n in range(50)])) == 50


def test_keys_rotate_command(tmp_path: Path) -> None:
    db = tmp_path / "c.db"

    async def seed() -> None:
        async with AuthStore(config(db, {1: K1})) as store:
            await store.session("s").keys.set({"pre-key": {"1": b"p"}})

    asyncio.run(seed())
    env = {
        "BAILEYS_STORE_CACHE": "none",
        "BAILEYS_STORE_ENCRYPTION": "aes-256-gcm",
        "BAILEYS_STORE_MASTER_KEYS": f"1:{K1},2:{K2}",
    }
    result = CliRunner().invoke(main, ["--store", f"sqlite:///{db}", "keys", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    expected = "1 session(s): 1 record(s) re-encrypted, 0 already current, 0 failed, 0 in use"
    assert expected in result.output
